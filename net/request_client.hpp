// RequestClient: a blocking request/reply client over one TCP connection, with a deadline on
// every call. For command-line tools and tests; the pipelined asynchronous client is
// chordkv::Client.
//
// Threading: one thread at a time; it runs its own io_context inside each call.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "chord/result.hpp"
#include "net/codec.hpp"

namespace chordkv::net {

// A frame that owns its payload.
struct Frame {
    std::uint8_t type = 0;
    std::string payload;
};

class RequestClient {
public:
    // Connects to "host:port". Errors: invalid_argument (bad address), unreachable (refused,
    // no route), timed_out.
    static Result<std::unique_ptr<RequestClient>> connect(const std::string& address,
                                                          std::chrono::milliseconds timeout,
                                                          std::string cluster_key = {});
    // Sends one complete frame and returns the next frame the server sends back. Errors:
    // timed_out, unreachable (connection closed), malformed_message / unauthenticated (the
    // reply does not decode).
    Result<Frame> call(const std::string& frame, std::chrono::milliseconds timeout);
    const std::string* key() const { return key_.empty() ? nullptr : &key_; }
    const std::string& address() const noexcept { return address_; }

private:
    RequestClient(std::string address, std::string key);
    // Runs the io_context until `done` or the deadline; on timeout closes the socket.
    bool run_until(const bool& done, std::chrono::milliseconds timeout);

    std::string address_;
    std::string key_;
    boost::asio::io_context io_;
    boost::asio::ip::tcp::socket socket_;
    FrameReader reader_;
};

}  // namespace chordkv::net
