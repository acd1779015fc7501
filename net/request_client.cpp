#include "net/request_client.hpp"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

#include "net/address.hpp"
#include "net/self_connect.hpp"

namespace chordkv::net {

namespace asio = boost::asio;
using asio::ip::tcp;

RequestClient::RequestClient(std::string address, std::string key)
    : address_(std::move(address)),
      key_(std::move(key)),
      socket_(io_),
      reader_(FrameLimits{kTcpPayloadBytesMax}, key_.empty() ? nullptr : &key_,
              StreamRole::acceptor, guard_) {}

bool RequestClient::run_until(const bool& done, std::chrono::milliseconds timeout) {
    io_.restart();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done && std::chrono::steady_clock::now() < deadline) {
        if (busy_poll_.count() > 0) {
            const auto spin_end = std::min(deadline, std::chrono::steady_clock::now() + busy_poll_);
            while (!done && !io_.stopped() && std::chrono::steady_clock::now() < spin_end) {
                io_.poll();
            }
            if (done) break;
        }
        io_.run_one_until(deadline);
    }
    if (done) return true;
    boost::system::error_code ignored;
    socket_.close(ignored);  // aborts the pending operation
    io_.restart();
    io_.run();  // let the aborted handler run (it sets `done`) so nothing refers to this call
    return false;
}

Result<std::unique_ptr<RequestClient>> RequestClient::connect(const std::string& address,
                                                              std::chrono::milliseconds timeout,
                                                              std::string cluster_key) {
    using R = Result<std::unique_ptr<RequestClient>>;
    auto hp = parse_host_port(address);
    if (!hp) return R(hp.error());
    std::unique_ptr<RequestClient> c(new RequestClient(hp->to_string(), std::move(cluster_key)));
    tcp::resolver resolver(c->io_);
    boost::system::error_code ec;
    auto endpoints = resolver.resolve(hp->host, std::to_string(hp->port), ec);
    if (ec) return R(Errc::unreachable, "cannot resolve '" + hp->host + "': " + ec.message());
    bool done = false;
    boost::system::error_code result;
    asio::async_connect(c->socket_, endpoints,
                        [&](const boost::system::error_code& e, const tcp::endpoint&) {
                            result = e;
                            done = true;
                        });
    if (!c->run_until(done, timeout)) {
        return R(Errc::timed_out, "connecting to " + c->address_);
    }
    if (result) return R(Errc::unreachable, c->address_ + ": " + result.message());
    if (connected_to_itself(c->socket_)) {
        return R(Errc::unreachable,
                 c->address_ + ": nothing listens there (the socket connected to itself)");
    }
    c->socket_.set_option(tcp::no_delay(true), ec);
    if (!c->key_.empty()) {
        // A keyed stream starts with our stream-open frame (net/codec.hpp).
        if (!c->write(encode_stream_open(StreamRole::connector, c->key_), timeout, ec)) {
            return R(Errc::timed_out, "opening the stream to " + c->address_);
        }
        if (ec) return R(Errc::unreachable, c->address_ + ": " + ec.message());
    }
    return c;
}

bool RequestClient::write(std::string_view bytes, std::chrono::milliseconds timeout,
                          boost::system::error_code& ec) {
    bool done = false;
    asio::async_write(socket_, asio::buffer(bytes.data(), bytes.size()),
                      [&](const boost::system::error_code& e, std::size_t) {
                          ec = e;
                          done = true;
                      });
    return run_until(done, timeout);
}

Error RequestClient::explain(const Error& error) const {
    const std::string& detail = error.detail();
    if (error.code() == Errc::unauthenticated && !reader_.replay_rejected()) {
        if (key_.empty()) {
            // The only frames a keyless reader refuses as unauthenticated are tagged ones.
            return Error(error.code(), address_ +
                                           ": the node authenticates its frames with a cluster "
                                           "key and this client has none (missing cluster key?)");
        }
        return Error(error.code(), address_ + ": " + detail +
                                       " — the node does not share this client's cluster key "
                                       "(wrong cluster key?)");
    }
    if (error.code() == Errc::unauthenticated) return Error(error.code(), address_ + ": " + detail);
    if (error.code() == Errc::unreachable && !heard_from_node_) {
        return Error(error.code(), detail +
                                       " before the node sent anything: it drops frames it "
                                       "cannot authenticate (wrong or missing cluster key?)");
    }
    return error;
}

std::chrono::milliseconds RequestClient::left_until(
    std::chrono::steady_clock::time_point deadline) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now());
}

Result<Frame> RequestClient::call(const std::string& frame, std::chrono::milliseconds timeout) {
    using R = Result<Frame>;
    if (!socket_.is_open()) return R(Errc::unreachable, address_ + ": connection closed");
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    boost::system::error_code ec;
    if (!write(frame, timeout, ec)) return R(Errc::timed_out, "sending to " + address_);
    if (ec) return R(explain(Error(Errc::unreachable, address_ + ": " + ec.message())));
    return receive(left_until(deadline));
}

Result<Frame> RequestClient::receive(std::chrono::milliseconds timeout) {
    using R = Result<Frame>;
    if (!socket_.is_open()) return R(Errc::unreachable, address_ + ": connection closed");
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    boost::system::error_code ec;
    char buffer[64 * 1024];
    for (;;) {
        auto next = reader_.next();
        if (!next) return R(explain(next.error()));
        if (next->has_value()) return Frame{(*next)->type, std::string((*next)->payload)};
        bool done = false;
        std::size_t n = 0;
        socket_.async_read_some(asio::buffer(buffer, sizeof buffer),
                                [&](const boost::system::error_code& e, std::size_t got) {
                                    ec = e;
                                    n = got;
                                    done = true;
                                });
        if (!run_until(done, left_until(deadline))) {
            return R(Errc::timed_out, "waiting for " + address_);
        }
        if (ec) {
            const std::string what =
                ec == asio::error::eof ? std::string("connection closed") : ec.message();
            return R(explain(Error(Errc::unreachable, address_ + ": " + what)));
        }
        heard_from_node_ = true;
        reader_.append(std::string_view(buffer, n));
    }
}

}  // namespace chordkv::net
