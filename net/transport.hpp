// Transport: one port number, two sockets — UDP for the protocol's small retried RPCs, TCP for
// client and bulk traffic — on the caller's io_context (DESIGN.md "Transport and wire format").
//
//   UDP  datagram ─► decode_frame (limits, MAC) ─► replay guard ─► decode_envelope ─► on_envelope
//   TCP  stream ──► FrameReader (limits, MAC, keyed-stream rules) ─► on_frame(connection, frame)
//                                                     └─ connection->send(reply frame)
//
// Every malformed, oversized, unauthenticated or replayed frame is dropped and counted; a TCP
// peer that sends one is disconnected; everyone else keeps being served. Queues are bounded.
//
// With a cluster key, replay protection (net/cluster_key.hpp, net/codec.hpp): every datagram's
// stamp is admitted once by the transport's ReplayGuard; an accepted connection first sends its
// own stream-open frame, and its reader admits the peer's stream-open frame in the same guard
// and then checks the order and freshness of every frame on the stream.
//
// Threading: all handlers run on the io_context; call every method from it (one thread, or a
// strand when the io_context runs on several).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "chord/messages.hpp"
#include "chord/result.hpp"
#include "net/address.hpp"
#include "net/cluster_key.hpp"
#include "net/codec.hpp"

namespace chordkv::net {

struct TransportOptions {
    // Cluster key for the frame MAC; empty = frames carry no tag.
    std::string cluster_key;
    // Frames waiting to be written on one TCP connection; beyond it the connection is closed
    // (a client that does not read its replies must not grow our memory without bound).
    std::size_t connection_queue_frames_max = 4096;
    // Open inbound TCP connections; more are accepted and closed at once.
    std::size_t connections_max = 1024;
    // Largest TCP frame payload accepted.
    std::size_t tcp_payload_bytes_max = kTcpPayloadBytesMax;
    // With a cluster key: how far a frame's stamp may lie from our clock, either way (transit,
    // queueing and clock skew between hosts). Default 30 s.
    std::chrono::milliseconds replay_window{30'000};
    // With a cluster key: stamps remembered to reject replays (every datagram and every TCP
    // stream takes one); ~64 bytes each, so the default costs at most ~5 MiB. When more than
    // this many arrive within one window, older stamps are rejected (ReplayGuard). Default 65536.
    std::size_t replay_cache_entries_max = 65'536;
};

struct TransportStats {
    std::uint64_t datagrams_received = 0;
    std::uint64_t datagrams_sent = 0;
    std::uint64_t frames_dropped = 0;          // malformed or oversized (UDP and TCP)
    std::uint64_t frames_unauthenticated = 0;  // missing or wrong MAC, or replayed (below)
    std::uint64_t frames_replayed = 0;         // of those: a good MAC but a stale or repeated stamp
    std::uint64_t send_errors = 0;             // unresolvable address, socket error
    std::uint64_t tcp_frames_received = 0;
    std::uint64_t tcp_connections_accepted = 0;
    std::uint64_t tcp_connections_dropped = 0;  // closed for a bad frame or a full queue
};

// One inbound TCP connection. Owned by the transport; handlers get a shared_ptr so a reply can
// be sent after the handler returned (send() on a closed connection is a no-op).
//
// Replies are gathered, not written one by one: the replies produced while the frames of one
// read are handled go out in one write after the last of them, and a reply sent from any other
// handler (one that completes later, e.g. after replication) is written by a flush posted to
// the io_context, together with every other reply queued before it runs — or, for a corked
// connection, when it is uncorked. So pipelined requests cost one send() per read, not one per
// request.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    Connection(boost::asio::ip::tcp::socket socket, class Transport& transport);
    void start();
    // Queues a complete frame (from encode_frame) for writing, in order; it is written when the
    // current read's frames are handled, or by a flush posted now (see above).
    void send(std::string frame);
    // The same for a frame of `type` carrying `body` (encode_message_frame), encoded straight
    // into the queue: no string of its own, so a reply costs no allocation once the queue has
    // grown. Throws only std::bad_alloc (the queue is left as it was).
    template <class T>
    void send_message(std::uint8_t type, const T& body, const std::string* key);
    // While corked (as many uncork() calls as cork() calls outstanding), send() only queues;
    // the last uncork() writes the queue at once, unless a read's frames are being handled
    // (their write comes after them). For a caller that replies to many requests outside a
    // read of this connection (Node::flush_puts): one write now instead of a posted one.
    void cork() noexcept { ++corked_; }
    void uncork();
    void close();
    bool open() const noexcept { return socket_.is_open(); }

private:
    void read();
    // Writes the queued frames unless a write is in flight (its handler writes the rest).
    void write();
    // Posts a write of the queue, unless one is posted, running, a read is being handled or
    // the connection is corked.
    void schedule_write();
    void fail();

    boost::asio::ip::tcp::socket socket_;
    Transport& transport_;
    FrameReader reader_;
    std::vector<char> buffer_;
    // Frames of the read being handled (views into reader_), at most kFramesAheadMax at a time:
    // enough for on_frames_ahead's prefetch to overlap its misses, and a bounded buffer per
    // connection however many small frames one read brings.
    static constexpr std::size_t kFramesAheadMax = 32;
    std::vector<FrameView> frames_;
    // Counts a frame about to be queued; fails the connection (false) when the queue holds
    // connection_queue_frames_max frames already.
    bool admit_frame();

    // Frames queued since the last write began, back to back, and the frames of the write in
    // flight. The two buffers trade places at each write and keep their capacity (up to
    // kKeptBytes), so a connection's replies do not allocate once it has warmed up.
    std::string queued_;
    std::string sending_;
    std::size_t queued_frames_ = 0;
    std::size_t sending_frames_ = 0;
    bool writing_ = false;
    bool handling_read_ = false;  // the frames of a read are being handled: write after them
    bool flush_posted_ = false;
    std::size_t corked_ = 0;  // cork() calls not yet matched by uncork()
};

template <class T>
void Connection::send_message(std::uint8_t type, const T& body, const std::string* key) {
    if (!open() || !admit_frame()) return;
    try {
        append_message_frame(queued_, type, body, key);
    } catch (...) {
        --queued_frames_;
        throw;
    }
    schedule_write();
}

class Transport {
public:
    using EnvelopeHandler = std::function<void(chord::Envelope envelope)>;
    using FrameHandler =
        std::function<void(const std::shared_ptr<Connection>& from, const FrameView& frame)>;

    // Binds UDP and TCP on `listen`. Errors: the socket error (address_in_use, ...) with the
    // address in the message; invalid_argument for a host that is not an IP address.
    static Result<std::unique_ptr<Transport>> open(boost::asio::io_context& io,
                                                   const HostPort& listen,
                                                   TransportOptions options);
    ~Transport();
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    // Starts the receive and accept loops.
    void start(EnvelopeHandler on_envelope, FrameHandler on_frame);
    // Called with the frames of one read of a connection (up to 32 at a time), when there is
    // more than one, before on_frame sees them one by one: to start loading what they will need
    // (Node prefetches their keys' cache entries). It must not send, close or keep the views.
    using FramesAheadHandler = std::function<void(const std::vector<FrameView>& frames)>;
    void on_frames_ahead(FramesAheadHandler handler) { on_frames_ahead_ = std::move(handler); }
    // Sends a protocol envelope over UDP to envelope.to_address. Failures are counted, not
    // reported: the protocol's tracker retries and times out.
    void send(const chord::Envelope& envelope);
    // Closes the sockets and every connection; pending handlers complete with operation_aborted.
    void close();

    const TransportStats& stats() const noexcept { return stats_; }
    // The replay guard's counters (stamps admitted, rejected by kind; unused without a key).
    const ReplayGuard& replay_guard() const noexcept { return replay_guard_; }
    const TransportOptions& options() const noexcept { return options_; }
    // The bound UDP/TCP port (useful when listening on port 0 in tests).
    std::uint16_t port() const;

private:
    friend class Connection;
    Transport(boost::asio::io_context& io, TransportOptions options);
    static Result<std::unique_ptr<Transport>> bind_once(
        boost::asio::io_context& io, const boost::asio::ip::address& ip, std::uint16_t port,
        const TransportOptions& options, const std::string& where, boost::system::error_code& ec);
    void receive();
    // Handles one datagram of `n` bytes in datagram_.
    void on_datagram(std::size_t n);
    void accept();
    const std::string* key() const {
        return options_.cluster_key.empty() ? nullptr : &options_.cluster_key;
    }
    Result<boost::asio::ip::udp::endpoint> resolve(const std::string& address);

    boost::asio::io_context& io_;
    TransportOptions options_;
    boost::asio::ip::udp::socket udp_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::vector<char> datagram_;
    boost::asio::ip::udp::endpoint sender_;
    EnvelopeHandler on_envelope_;
    FrameHandler on_frame_;
    FramesAheadHandler on_frames_ahead_;
    std::unordered_map<std::string, boost::asio::ip::udp::endpoint> endpoints_;
    std::vector<std::weak_ptr<Connection>> connections_;
    TransportStats stats_;
    ReplayGuard replay_guard_;
    bool closed_ = false;
};

}  // namespace chordkv::net
