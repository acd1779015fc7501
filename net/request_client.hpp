// RequestClient: a blocking request/reply client over one TCP connection, with a deadline on
// every call. For command-line tools and tests; the pipelined asynchronous client is
// chordkv::Client.
//
// With a cluster key the connection is a keyed stream (net/codec.hpp): connect() sends our
// stream-open frame, and the node's own stream-open frame is checked and consumed before its
// first reply. Errors that look like a key mismatch say so in their message.
//
// Threading: one thread at a time; it runs its own io_context inside each call.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "chord/result.hpp"
#include "net/cluster_key.hpp"
#include "net/codec.hpp"

namespace chordkv::net {

// A frame that owns its payload.
struct Frame {
    std::uint8_t type = 0;
    std::string payload;
};

class RequestClient {
public:
    // Connects to "host:port" (and, with a key, sends the stream-open frame). Errors:
    // invalid_argument (bad address), unreachable (refused, no route), timed_out.
    static Result<std::unique_ptr<RequestClient>> connect(const std::string& address,
                                                          std::chrono::milliseconds timeout,
                                                          std::string cluster_key = {});
    // Sends one complete frame and returns the next frame the server sends back. Frames must
    // be encoded (stamped) in the order they are sent, so encode each just before its call.
    // Errors: timed_out, unreachable (connection closed), malformed_message / unauthenticated
    // (the reply does not decode, fails the MAC policy — e.g. the node's key differs from
    // ours, or it has one and we do not — or the keyed-stream checks).
    Result<Frame> call(const std::string& frame, std::chrono::milliseconds timeout);
    // The next frame the node sends, without sending anything: the further replies when one
    // call() sent several requests (pipelined). Errors as call()'s.
    Result<Frame> receive(std::chrono::milliseconds timeout);
    const std::string* key() const { return key_.empty() ? nullptr : &key_; }
    const std::string& address() const noexcept { return address_; }
    // While waiting for a reply, poll for up to `spin` before sleeping in the kernel (see
    // net/run_loop.hpp): lower latency for a core kept busy. 0 (the default): never poll.
    void set_busy_poll(std::chrono::microseconds spin) noexcept { busy_poll_ = spin; }

private:
    RequestClient(std::string address, std::string key);
    // Runs the io_context until `done` or the deadline; on timeout closes the socket.
    bool run_until(const bool& done, std::chrono::milliseconds timeout);
    // Writes `bytes`; false on timeout (closes the socket), else the write's error.
    bool write(std::string_view bytes, std::chrono::milliseconds timeout,
               boost::system::error_code& ec);
    // Time from now to `deadline` (negative once it has passed: run_until then times out).
    static std::chrono::milliseconds left_until(std::chrono::steady_clock::time_point deadline);
    // `error` (from reading the node's frames, or the connection closing) with a hint when it
    // looks like a cluster key mismatch.
    Error explain(const Error& error) const;

    std::string address_;
    std::string key_;
    boost::asio::io_context io_{1};  // one thread runs it
    std::chrono::microseconds busy_poll_{0};
    boost::asio::ip::tcp::socket socket_;
    ReplayGuard guard_;  // admits the node's stream-open frame; declared before the reader
    FrameReader reader_;
    bool heard_from_node_ = false;  // some bytes arrived on this connection
};

}  // namespace chordkv::net
