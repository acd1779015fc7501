#include "net/transport.hpp"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <optional>
#include <vector>

namespace chordkv::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

constexpr std::size_t kDatagramBytesMax = 65536;
constexpr std::size_t kReadChunkBytes = 64 * 1024;
constexpr std::size_t kEndpointCacheMax = 65536;

Error socket_error(const boost::system::error_code& ec, const std::string& what) {
    return Error(std::error_code(ec.value(), std::system_category()), what + ": " + ec.message());
}

}  // namespace

// --- Connection -------------------------------------------------------------------------

Connection::Connection(tcp::socket socket, Transport& transport)
    : socket_(std::move(socket)),
      transport_(transport),
      reader_(FrameLimits{transport.options().tcp_payload_bytes_max}, transport.key(),
              StreamRole::connector, transport.replay_guard_),
      buffer_(kReadChunkBytes) {}

void Connection::start() {
    // A keyed stream starts with our stream-open frame (net/codec.hpp), before any reply.
    if (const std::string* key = transport_.key()) {
        send(encode_stream_open(StreamRole::acceptor, *key));
    }
    read();
}

void Connection::read() {
    socket_.async_read_some(
        asio::buffer(buffer_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
            if (ec) {
                self->close();
                return;
            }
            self->reader_.append(std::string_view(self->buffer_.data(), n));
            // The read's frames are taken out a few at a time (their views stay valid until
            // the next append) and shown to on_frames_ahead; then each is handled, and a bad
            // one ends the connection after those before it. Replies are queued, then written
            // at once.
            auto& frames = self->frames_;
            std::optional<Error> bad;
            self->handling_read_ = true;
            for (bool more = true; more && !bad;) {
                frames.clear();
                while (frames.size() < kFramesAheadMax) {
                    auto next = self->reader_.next();
                    if (!next) {
                        bad = next.error();
                        break;
                    }
                    if (!next->has_value()) {
                        more = false;
                        break;
                    }
                    frames.push_back(**next);
                }
                if (frames.size() > 1 && self->transport_.on_frames_ahead_) {
                    self->transport_.on_frames_ahead_(frames);
                }
                for (const FrameView& frame : frames) {
                    ++self->transport_.stats_.tcp_frames_received;
                    if (self->transport_.on_frame_) self->transport_.on_frame_(self, frame);
                    if (!self->open()) {
                        self->handling_read_ = false;
                        return;
                    }
                }
            }
            self->handling_read_ = false;
            if (bad) {
                if (bad->code() == Errc::unauthenticated) {
                    ++self->transport_.stats_.frames_unauthenticated;
                    if (self->reader_.replay_rejected()) ++self->transport_.stats_.frames_replayed;
                } else {
                    ++self->transport_.stats_.frames_dropped;
                }
                self->fail();
                return;
            }
            self->write();
            self->read();
        });
}

bool Connection::admit_frame() {
    if (queued_frames_ + sending_frames_ >= transport_.options().connection_queue_frames_max) {
        fail();
        return false;
    }
    ++queued_frames_;
    return true;
}

void Connection::send(std::string frame) {
    if (!open() || !admit_frame()) return;
    // A frame larger than what the queue can hold is taken as it is rather than copied.
    if (queued_.empty() && frame.capacity() > queued_.capacity()) {
        queued_ = std::move(frame);
    } else {
        queued_ += frame;
    }
    schedule_write();
}

void Connection::uncork() {
    if (corked_ == 0 || --corked_ > 0) return;
    if (!handling_read_ && !flush_posted_ && open()) write();
}

void Connection::schedule_write() {
    if (writing_ || handling_read_ || corked_ > 0 || flush_posted_) return;
    flush_posted_ = true;
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
        self->flush_posted_ = false;
        if (self->open()) self->write();
    });
}

void Connection::write() {
    // Every frame queued since the previous write goes out in one write (one send() for many
    // pipelined replies).
    if (writing_ || queued_.empty()) return;
    writing_ = true;
    sending_.swap(queued_);
    sending_frames_ = queued_frames_;
    queued_frames_ = 0;
    asio::async_write(
        socket_, asio::buffer(sending_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
            // sending_ is this write's buffer: close() leaves it alone, and it is cleared
            // here once the write is over.
            self->writing_ = false;
            self->sending_.clear();
            self->sending_frames_ = 0;
            if (ec || !self->open()) {
                self->close();
                return;
            }
            // A buffer a large frame grew is not kept for the small ones that follow.
            constexpr std::size_t kKeptBytes = 64 * 1024;
            if (self->sending_.capacity() > kKeptBytes) std::string().swap(self->sending_);
            self->write();
        });
}

void Connection::fail() {
    ++transport_.stats_.tcp_connections_dropped;
    close();
}

void Connection::close() {
    if (!socket_.is_open()) return;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    // An in-flight async_write still reads sending_; its handler clears it.
    queued_.clear();
    queued_frames_ = 0;
}

// --- Transport --------------------------------------------------------------------------

Transport::Transport(asio::io_context& io, TransportOptions options)
    : io_(io),
      options_(std::move(options)),
      udp_(io),
      acceptor_(io),
      datagram_(kDatagramBytesMax),
      replay_guard_(ReplayGuardOptions{options_.replay_window, options_.replay_cache_entries_max}) {
}

Transport::~Transport() {
    close();
}

Result<std::unique_ptr<Transport>> Transport::open(asio::io_context& io, const HostPort& listen,
                                                   TransportOptions options) {
    using R = Result<std::unique_ptr<Transport>>;
    boost::system::error_code ec;
    const auto ip = asio::ip::make_address(listen.host, ec);
    if (ec) {
        return R(Errc::invalid_argument,
                 "listen address '" + listen.host + "' is not an IP address");
    }
    const std::string where = listen.to_string();
    // Port 0: UDP picks a free port and TCP takes the same number, which an outgoing TCP
    // connection may hold already; then try another port (a fixed port fails at once).
    constexpr int kAnyPortAttempts = 20;
    for (int attempt = 1;; ++attempt) {
        auto t = bind_once(io, ip, listen.port, options, where, ec);
        if (t) return std::move(t).value();
        if (listen.port != 0 || t.code() != std::errc::address_in_use ||
            attempt == kAnyPortAttempts) {
            return R(t.error());
        }
    }
}

Result<std::unique_ptr<Transport>> Transport::bind_once(
    asio::io_context& io, const asio::ip::address& ip, std::uint16_t port,
    const TransportOptions& options, const std::string& where, boost::system::error_code& ec) {
    using R = Result<std::unique_ptr<Transport>>;
    std::unique_ptr<Transport> t(new Transport(io, options));

    const udp::endpoint udp_endpoint(ip, port);
    t->udp_.open(udp_endpoint.protocol(), ec);
    if (!ec) t->udp_.bind(udp_endpoint, ec);
    if (ec) return R(socket_error(ec, "UDP " + where));
    // Bursts of maintenance traffic from many vnodes: a larger receive buffer loses less.
    t->udp_.set_option(asio::socket_base::receive_buffer_size(4 << 20), ec);

    // TCP on the same port number as UDP (port 0: the port UDP got).
    const tcp::endpoint tcp_endpoint(ip, t->udp_.local_endpoint().port());
    t->acceptor_.open(tcp_endpoint.protocol(), ec);
    if (!ec) t->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) t->acceptor_.bind(tcp_endpoint, ec);
    if (!ec) t->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return R(socket_error(ec, "TCP " + where));
    return t;
}

std::uint16_t Transport::port() const {
    boost::system::error_code ec;
    const auto endpoint = udp_.local_endpoint(ec);
    return ec ? 0 : endpoint.port();
}

void Transport::start(EnvelopeHandler on_envelope, FrameHandler on_frame) {
    on_envelope_ = std::move(on_envelope);
    on_frame_ = std::move(on_frame);
    receive();
    accept();
}

void Transport::receive() {
    udp_.async_receive_from(asio::buffer(datagram_), sender_,
                            [this](const boost::system::error_code& ec, std::size_t n) {
                                if (ec == asio::error::operation_aborted || closed_) return;
                                if (!ec) on_datagram(n);
                                // Errors on an unconnected UDP socket (e.g. an ICMP port
                                // unreachable reported on Linux) concern one earlier datagram, not
                                // the socket: keep receiving.
                                receive();
                            });
}

void Transport::on_datagram(std::size_t n) {
    ++stats_.datagrams_received;
    auto frame = decode_frame(std::string_view(datagram_.data(), n),
                              FrameLimits{kUdpPayloadBytesMax}, key());
    if (!frame) {
        if (frame.code() == Errc::unauthenticated) {
            ++stats_.frames_unauthenticated;
        } else {
            ++stats_.frames_dropped;
        }
        return;
    }
    // The tag is good; now the stamp: fresh, and never seen before.
    if (key() != nullptr && !replay_guard_.admit(frame->stamp, ReplayGuard::Clock::now())) {
        ++stats_.frames_unauthenticated;
        ++stats_.frames_replayed;
        return;
    }
    auto envelope = decode_envelope(*frame);
    if (!envelope) {
        ++stats_.frames_dropped;
        return;
    }
    if (on_envelope_) on_envelope_(std::move(envelope).value());
}

void Transport::accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || closed_) return;
        if (!ec) {
            // Forget connections that have closed, then enforce the bound.
            connections_.erase(std::remove_if(connections_.begin(), connections_.end(),
                                              [](const auto& w) {
                                                  auto c = w.lock();
                                                  return !c || !c->open();
                                              }),
                               connections_.end());
            if (connections_.size() >= options_.connections_max) {
                boost::system::error_code ignored;
                socket.close(ignored);
                ++stats_.tcp_connections_dropped;
            } else {
                ++stats_.tcp_connections_accepted;
                boost::system::error_code ignored;
                socket.set_option(tcp::no_delay(true), ignored);
                auto connection = std::make_shared<Connection>(std::move(socket), *this);
                connections_.push_back(connection);
                connection->start();
            }
        }
        accept();
    });
}

Result<udp::endpoint> Transport::resolve(const std::string& address) {
    using R = Result<udp::endpoint>;
    if (auto it = endpoints_.find(address); it != endpoints_.end()) return it->second;
    auto hp = parse_host_port(address);
    if (!hp) return R(hp.error());
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(hp->host, ec);
    udp::endpoint endpoint;
    if (!ec) {
        endpoint = udp::endpoint(ip, hp->port);
    } else {
        // A host name: resolve once (blocking, rare: seeds and advertised names) and cache.
        udp::resolver resolver(io_);
        auto results = resolver.resolve(udp::v4(), hp->host, std::to_string(hp->port), ec);
        if (ec || results.empty()) {
            return R(Errc::unreachable, "cannot resolve '" + hp->host + "'");
        }
        endpoint = results.begin()->endpoint();
    }
    if (endpoints_.size() >= kEndpointCacheMax) endpoints_.clear();
    endpoints_.emplace(address, endpoint);
    return endpoint;
}

void Transport::send(const chord::Envelope& envelope) {
    if (closed_) return;
    auto endpoint = resolve(envelope.to_address);
    if (!endpoint) {
        ++stats_.send_errors;
        return;
    }
    auto bytes = std::make_shared<std::string>(encode_envelope(envelope, key()));
    if (bytes->size() > kDatagramBytesMax) {
        ++stats_.send_errors;
        return;
    }
    ++stats_.datagrams_sent;
    udp_.async_send_to(asio::buffer(*bytes), *endpoint,
                       [this, bytes](const boost::system::error_code& ec, std::size_t) {
                           if (ec && ec != asio::error::operation_aborted) ++stats_.send_errors;
                       });
}

void Transport::close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    udp_.close(ignored);
    acceptor_.close(ignored);
    for (auto& weak : connections_) {
        if (auto c = weak.lock()) c->close();
    }
    connections_.clear();
}

}  // namespace chordkv::net
