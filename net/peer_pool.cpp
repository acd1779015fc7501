#include "net/peer_pool.hpp"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cassert>
#include <deque>
#include <set>
#include <utility>
#include <vector>

#include "net/address.hpp"
#include "net/self_connect.hpp"

namespace chordkv::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kReadChunkBytes = 64 * 1024;
// One gathered write takes at most this many queued frames, or about this many bytes (always
// at least one frame): batching cuts system calls when many small requests are pipelined.
constexpr std::size_t kWriteBatchFramesMax = 64;
constexpr std::size_t kWriteBatchBytesMax = 256 * 1024;
// Map and set nodes of completed calls kept per connection for reuse.
constexpr std::size_t kSpareNodesMax = 1024;

// The request id at the start of a payload (the wire contract in peer_pool.hpp).
std::uint64_t read_request_id(const char* bytes) noexcept {
    return request_id_of(std::string_view(bytes, kRequestIdBytes));
}

// Calls every handler with `error`. Touches nothing but the handlers, so it is safe after a
// handler destroyed the pool.
void complete_all(std::vector<PeerPool::ReplyHandler>& handlers, const Error& error) {
    for (auto& done : handlers) done(Result<Frame>(error));
}

}  // namespace

// --- Peer -------------------------------------------------------------------------------------
//
// One connection and the calls pending on it.
//
//   resolving ──► connecting ──► connected
//       │              │             │
//       └──────────────┴─────────────┴──► closed (shut(): nothing pending, never reopened)
//
// Every asynchronous handler holds a shared_ptr to its Peer and returns at once when the Peer
// is closed. Invariant: while a Peer is not closed, its pool is alive (the pool closes all its
// Peers in close(), which its destructor calls), so `pool_` may only be touched after checking
// `closed_`. Handlers of the caller are invoked only after the Peer's and the pool's state is
// consistent, because they may re-enter the pool (call, close, even destroy it).
class PeerPool::Peer : public std::enable_shared_from_this<Peer> {
public:
    Peer(PeerPool& pool, std::string address, HostPort target)
        : pool_(&pool),
          address_(std::move(address)),
          target_(std::move(target)),
          key_(pool.options_.cluster_key),
          connect_timeout_(pool.options_.connect_timeout),
          socket_(pool.io_),
          resolver_(pool.io_),
          timer_(pool.io_),
          reader_(FrameLimits{pool.options_.tcp_payload_bytes_max}, key_.empty() ? nullptr : &key_,
                  StreamRole::acceptor, guard_) {}

    const std::string& address() const noexcept { return address_; }
    std::size_t pending_count() const noexcept { return pending_.size(); }
    std::size_t queued_frames() const noexcept { return queue_.size(); }
    bool idle() const noexcept { return pending_.empty(); }
    std::uint64_t last_used() const noexcept { return last_used_; }

    // Resolves (unless the host is an IP literal) and connects. With a key, our stream-open
    // frame (net/codec.hpp) is queued first, ahead of every call's frame.
    void start() {
        if (!key_.empty()) queue_.push_back(encode_stream_open(StreamRole::connector, key_));
        state_ = State::connecting;
        connect_deadline_ = Clock::now() + connect_timeout_;
        arm();
        boost::system::error_code ec;
        const auto ip = asio::ip::make_address(target_.host, ec);
        if (!ec) {
            socket_.async_connect(tcp::endpoint(ip, target_.port),
                                  [self = shared_from_this()](const boost::system::error_code& e) {
                                      self->on_connect(e);
                                  });
            return;
        }
        state_ = State::resolving;
        resolver_.async_resolve(
            target_.host, std::to_string(target_.port),
            [self = shared_from_this()](const boost::system::error_code& e,
                                        const tcp::resolver::results_type& results) {
                if (self->closed_) return;
                if (e) {
                    self->fail(self->error_here(
                        Errc::unreachable,
                        "cannot resolve '" + self->target_.host + "': " + e.message()));
                    return;
                }
                self->state_ = State::connecting;
                asio::async_connect(self->socket_, results,
                                    [self](const boost::system::error_code& e2,
                                           const tcp::endpoint&) { self->on_connect(e2); });
            });
    }

    // Adds a call: its frame is written as soon as the connection allows, in order.
    void add(std::uint64_t id, std::string frame, ReplyHandler done, Clock::time_point deadline) {
        assert(frame.size() >= kFrameHeaderBytes + kRequestIdBytes &&
               read_request_id(frame.data() + kFrameHeaderBytes) == id &&
               "MakeFrame must put the request id first in the payload");
        // The map and set nodes of completed calls are reused: no allocation per call.
        if (spare_pending_.empty()) {
            pending_.emplace(id, Pending{std::move(done), deadline});
        } else {
            auto node = std::move(spare_pending_.back());
            spare_pending_.pop_back();
            node.key() = id;
            node.mapped() = Pending{std::move(done), deadline};
            pending_.insert(std::move(node));
        }
        if (spare_deadlines_.empty()) {
            deadlines_.emplace(deadline, id);
        } else {
            auto node = std::move(spare_deadlines_.back());
            spare_deadlines_.pop_back();
            node.value() = {deadline, id};
            deadlines_.insert(std::move(node));
        }
        queue_.push_back(std::move(frame));
        last_used_ = id;
        schedule_write();
        arm();
    }

    // Closes the connection and cancels its operations without completing anything; returns
    // the handlers of the pending calls in request-id order for the caller to complete.
    std::vector<ReplyHandler> shut() {
        closed_ = true;
        boost::system::error_code ignored;
        resolver_.cancel();
        timer_.cancel();
        socket_.close(ignored);
        std::vector<std::pair<std::uint64_t, ReplyHandler>> taken;
        taken.reserve(pending_.size());
        for (auto& [id, pending] : pending_) taken.emplace_back(id, std::move(pending.done));
        std::sort(taken.begin(), taken.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
        pending_.clear();
        deadlines_.clear();
        queue_.clear();
        std::vector<ReplyHandler> handlers;
        handlers.reserve(taken.size());
        for (auto& entry : taken) handlers.push_back(std::move(entry.second));
        return handlers;
    }

private:
    enum class State { resolving, connecting, connected };

    struct Pending {
        ReplyHandler done;
        Clock::time_point deadline;
    };
    using PendingMap = std::unordered_map<std::uint64_t, Pending>;
    using DeadlineSet = std::set<std::pair<Clock::time_point, std::uint64_t>>;

    Error error_here(Errc code, const std::string& what) const {
        return Error(code, address_ + ": " + what);
    }

    // Closes this Peer for `error`, forgets it in the pool and fails every pending call.
    // Precondition: not closed.
    void fail(const Error& error) {
        auto self = shared_from_this();  // the pool's reference goes in forget()
        if (state_ == State::connected) {
            ++pool_->stats_.dropped_connections;
        } else {
            ++pool_->stats_.connect_failures;
        }
        auto handlers = shut();
        pool_->forget(*this);
        complete_all(handlers, error);
    }

    void on_connect(const boost::system::error_code& ec) {
        if (closed_) return;
        if (ec) {
            fail(error_here(Errc::unreachable, "connect: " + ec.message()));
            return;
        }
        if (connected_to_itself(socket_)) {
            fail(error_here(Errc::unreachable,
                            "connect: nothing listens there (the socket connected to itself)"));
            return;
        }
        state_ = State::connected;
        ++pool_->stats_.connects;
        boost::system::error_code ignored;
        socket_.set_option(tcp::no_delay(true), ignored);
        buffer_.resize(kReadChunkBytes);
        read();
        write();
    }

    void read() {
        socket_.async_read_some(
            asio::buffer(buffer_),
            [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                if (self->closed_) return;
                if (ec) {
                    self->fail(self->error_here(Errc::unreachable,
                                                ec == asio::error::eof
                                                    ? std::string("connection closed by the peer")
                                                    : "connection lost: " + ec.message()));
                    return;
                }
                self->reader_.append(std::string_view(self->buffer_.data(), n));
                if (self->dispatch()) self->read();
            });
    }

    // Completes the calls whose replies are buffered. Returns false when this Peer closed
    // (a bad frame, or a handler closed or destroyed the pool).
    bool dispatch() {
        for (;;) {
            auto next = reader_.next();
            if (!next) {
                const Error& e = next.error();
                fail(Error(e.code(), address_ + ": bad reply frame: " + e.detail()));
                return false;
            }
            if (!next->has_value()) return true;
            const FrameView& frame = **next;
            if (frame.payload.size() < kRequestIdBytes) {
                fail(error_here(Errc::malformed_message, "reply payload of " +
                                                             std::to_string(frame.payload.size()) +
                                                             " bytes has no request id"));
                return false;
            }
            const std::uint64_t id = read_request_id(frame.payload.data());
            const auto it = pending_.find(id);
            if (it == pending_.end()) {
                ++pool_->stats_.replies_unmatched;
                continue;
            }
            ReplyHandler done = std::move(it->second.done);
            recycle(deadlines_.extract({it->second.deadline, id}));
            recycle(pending_.extract(it));
            ++pool_->stats_.replies;
            // The timer is not re-armed: it may wake early, find nothing due, and re-arm.
            done(Frame{frame.type, std::string(frame.payload)});
            if (closed_) return false;
        }
    }

    // Keeps the node of a completed call for the next one (up to a bound).
    void recycle(PendingMap::node_type node) {
        if (node && spare_pending_.size() < kSpareNodesMax) {
            node.mapped() = Pending{};
            spare_pending_.push_back(std::move(node));
        }
    }
    void recycle(DeadlineSet::node_type node) {
        if (node && spare_deadlines_.size() < kSpareNodesMax) {
            spare_deadlines_.push_back(std::move(node));
        }
    }

    // Posts a write of the queued frames unless one is posted or in flight. Deferring the write
    // to a posted handler gathers every call made before it runs — by the handlers of all the
    // replies one read delivered, and by the other handlers ready in the io_context — into one
    // write, instead of one send() for the first call and another for the rest.
    void schedule_write() {
        if (writing_ || flush_posted_ || state_ != State::connected) return;
        flush_posted_ = true;
        asio::post(socket_.get_executor(), [self = shared_from_this()] {
            self->flush_posted_ = false;
            if (!self->closed_) self->write();
        });
    }

    // Writes queued frames, gathered into one write, while connected and not already writing.
    void write() {
        if (writing_ || queue_.empty() || state_ != State::connected) return;
        writing_ = true;
        batch_.clear();
        buffers_.clear();
        std::size_t bytes = 0;
        while (!queue_.empty() && batch_.size() < kWriteBatchFramesMax &&
               (batch_.empty() || bytes + queue_.front().size() <= kWriteBatchBytesMax)) {
            bytes += queue_.front().size();
            batch_.push_back(std::move(queue_.front()));
            queue_.pop_front();
        }
        for (const auto& frame : batch_) buffers_.push_back(asio::buffer(frame));
        asio::async_write(
            socket_, buffers_,
            [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                if (self->closed_) return;
                self->writing_ = false;
                if (ec) {
                    self->fail(self->error_here(Errc::unreachable, "write: " + ec.message()));
                    return;
                }
                self->write();
            });
    }

    // Arms the timer to the earliest deadline unless it is already armed at or before it.
    void arm() {
        std::optional<Clock::time_point> next;
        if (state_ != State::connected) next = connect_deadline_;
        if (!deadlines_.empty()) {
            const auto earliest = deadlines_.begin()->first;
            if (!next || earliest < *next) next = earliest;
        }
        if (!next || (armed_ && armed_at_ <= *next)) return;
        armed_ = true;
        armed_at_ = *next;
        timer_.expires_at(*next);  // cancels the previous wait, if still pending
        timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
            if (self->closed_ || ec == asio::error::operation_aborted) return;
            self->armed_ = false;
            self->on_timer();
        });
    }

    // Fails the calls whose deadline passed (timed_out) and, when the connection is not up by
    // its connect deadline, everything else (unreachable); then re-arms. Idempotent: a wake-up
    // with nothing due only re-arms.
    void on_timer() {
        auto self = shared_from_this();
        const auto now = Clock::now();
        std::vector<ReplyHandler> expired;
        while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
            const std::uint64_t id = deadlines_.begin()->second;
            deadlines_.erase(deadlines_.begin());
            const auto it = pending_.find(id);
            expired.push_back(std::move(it->second.done));
            pending_.erase(it);
        }
        pool_->stats_.timeouts += expired.size();
        std::vector<ReplyHandler> stranded;
        if (state_ != State::connected && now >= connect_deadline_) {
            ++pool_->stats_.connect_failures;
            stranded = shut();
            pool_->forget(*this);
        } else {
            arm();
        }
        complete_all(expired, error_here(Errc::timed_out, "no reply before the deadline"));
        complete_all(stranded, error_here(Errc::unreachable,
                                          "not connected within " +
                                              std::to_string(connect_timeout_.count()) + " ms"));
    }

    PeerPool* pool_;  // valid while !closed_
    const std::string address_;
    const HostPort target_;
    const std::string key_;  // a copy: the reader may outlive the pool
    const std::chrono::milliseconds connect_timeout_;
    tcp::socket socket_;
    tcp::resolver resolver_;
    asio::steady_timer timer_;
    // Admits the peer's stream-open frame (one per connection, so its default bound is ample);
    // the reader checks every later frame's order and freshness against it.
    ReplayGuard guard_;
    FrameReader reader_;
    std::vector<char> buffer_;

    State state_ = State::resolving;
    bool closed_ = false;
    Clock::time_point connect_deadline_{};
    bool armed_ = false;
    Clock::time_point armed_at_{};

    PendingMap pending_;
    DeadlineSet deadlines_;
    std::vector<PendingMap::node_type> spare_pending_;
    std::vector<DeadlineSet::node_type> spare_deadlines_;
    std::deque<std::string> queue_;
    std::vector<std::string> batch_;  // the frames of the write in progress
    std::vector<asio::const_buffer> buffers_;
    bool writing_ = false;
    bool flush_posted_ = false;
    std::uint64_t last_used_ = 0;  // request id of the latest call: the LRU order
};

// --- PeerPool ---------------------------------------------------------------------------------

PeerPool::PeerPool(asio::io_context& io, PeerPoolOptions options)
    : io_(io), options_(std::move(options)) {
    assert(options_.inflight_per_peer_max >= 1 && options_.peers_max >= 1);
}

PeerPool::~PeerPool() {
    close();
}

void PeerPool::close() {
    if (closed_) return;
    closed_ = true;
    // Take the peers out first: handlers may re-enter (call fails with shutting_down) or
    // destroy the pool; from here on nothing touches a member.
    PeerMap peers = std::move(peers_);
    peers_.clear();
    std::vector<std::vector<ReplyHandler>> handlers;
    handlers.reserve(peers.size());
    for (auto& entry : peers) handlers.push_back(entry.second->shut());
    const Error error(Errc::shutting_down, "the peer pool is closed");
    for (auto& list : handlers) complete_all(list, error);
}

std::size_t PeerPool::inflight(const std::string& address) const {
    const auto it = peers_.find(address);
    return it == peers_.end() ? 0 : it->second->pending_count();
}

void PeerPool::post_failure(ReplyHandler done, Error error) {
    asio::post(io_,
               [done = std::move(done), error = std::move(error)] { done(Result<Frame>(error)); });
}

Result<PeerPool::Peer*> PeerPool::peer_for(const std::string& address) {
    if (const auto it = peers_.find(address); it != peers_.end()) return it->second.get();
    auto target = parse_host_port(address);
    if (!target) return target.error();
    if (peers_.size() >= options_.peers_max) {
        auto victim = peers_.end();
        for (auto it = peers_.begin(); it != peers_.end(); ++it) {
            if (!it->second->idle()) continue;
            if (victim == peers_.end() || it->second->last_used() < victim->second->last_used()) {
                victim = it;
            }
        }
        if (victim == peers_.end()) {
            return Error(Errc::busy, std::to_string(peers_.size()) +
                                         " connections open (peers_max), none idle");
        }
        auto nothing_pending = victim->second->shut();
        assert(nothing_pending.empty());
        peers_.erase(victim);
    }
    auto peer = std::make_shared<Peer>(*this, address, std::move(*target));
    peers_.emplace(address, peer);
    peer->start();
    return peer.get();
}

void PeerPool::forget(const Peer& peer) {
    const auto it = peers_.find(peer.address());
    if (it != peers_.end() && it->second.get() == &peer) peers_.erase(it);
}

void PeerPool::call(const std::string& address, const MakeFrame& make, ReplyHandler done,
                    std::optional<std::chrono::milliseconds> timeout) {
    if (closed_) {
        post_failure(std::move(done), Error(Errc::shutting_down, "the peer pool is closed"));
        return;
    }
    auto peer = peer_for(address);
    if (!peer) {
        if (peer.code() == Errc::busy) ++stats_.busy;
        post_failure(std::move(done), peer.error());
        return;
    }
    Peer& target = **peer;
    const std::size_t limit = options_.inflight_per_peer_max;
    if (target.pending_count() >= limit || target.queued_frames() >= limit) {
        ++stats_.busy;
        post_failure(std::move(done),
                     Error(Errc::busy, address + ": " + std::to_string(target.pending_count()) +
                                           " calls in flight (inflight_per_peer_max " +
                                           std::to_string(limit) + ")"));
        return;
    }
    const std::uint64_t id = next_request_id_++;
    std::string frame = make(id);
    const auto deadline = Clock::now() + timeout.value_or(options_.request_timeout);
    ++stats_.requests;
    target.add(id, std::move(frame), std::move(done), deadline);
}

}  // namespace chordkv::net
