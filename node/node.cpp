#include "node/node.hpp"

#include <boost/asio/post.hpp>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "chord/placement.hpp"
#include "net/admin_codec.hpp"
#include "node/vnode_ids.hpp"

namespace chordkv {

namespace asio = boost::asio;

namespace {

constexpr auto kJoinRetryDelay = std::chrono::milliseconds(500);
constexpr const char* kVersion = "chordkv 0.1.0";

std::uint64_t seed_from(std::uint64_t seed) {
    if (seed != 0) return seed;
    std::random_device device;
    return (std::uint64_t{device()} << 32) ^ device();
}

}  // namespace

Node::Node(asio::io_context& io, NodeOptions options)
    : io_(io),
      options_(std::move(options)),
      rng_(seed_from(options_.seed)),
      timer_(io),
      repair_timer_(io),
      gc_timer_(io),
      purge_timer_(io) {}

// One thread running the store reads too long for the io thread — the key counts of
// info_with_keys() and the arc digests of anti-entropy (digest_async) — one at a time, in order.
class Node::StoreReader {
public:
    ~StoreReader() {
        {
            const std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
            jobs_.clear();
        }
        wake_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

    // False when `queued_max` jobs are already waiting.
    bool add(std::function<void()> job, std::size_t queued_max) {
        {
            const std::lock_guard<std::mutex> lock(mutex_);
            if (jobs_.size() >= queued_max) return false;
            jobs_.push_back(std::move(job));
        }
        if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
        wake_.notify_one();
        return true;
    }

private:
    void run() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
                if (stop_) return;
                job = std::move(jobs_.front());
                jobs_.pop_front();
            }
            job();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    std::thread thread_;  // started by the first add(), on the io thread
};

Node::~Node() {
    stop();
    gc_release();  // also when stop() ran before and a job began after it
}

Result<std::unique_ptr<Node>> Node::open(asio::io_context& io, NodeOptions options) {
    using R = Result<std::unique_ptr<Node>>;
    auto listen = net::parse_host_port(options.listen, 0, /*allow_port_zero=*/true);
    if (!listen) return R(Errc::invalid_argument, "listen: " + listen.error().message());
    if (options.vnodes == 0 || options.vnodes > 1024) {
        return R(Errc::invalid_argument,
                 "vnodes must be in 1..1024, got " + std::to_string(options.vnodes));
    }
    if (options.replicas == 0 || options.replicas > 16) {
        return R(Errc::invalid_argument,
                 "replicas must be in 1..16, got " + std::to_string(options.replicas));
    }
    if (options.write_acks == 0 || options.write_acks > options.replicas) {
        return R(Errc::invalid_argument,
                 "write acks must be in 1..replicas, got " + std::to_string(options.write_acks));
    }
    for (const auto& seed : options.join) {
        if (auto s = net::parse_host_port(seed); !s) {
            return R(Errc::invalid_argument, "join: " + s.error().message());
        }
    }

    std::unique_ptr<Node> node(new Node(io, std::move(options)));
    const NodeOptions& o = node->options_;

    std::error_code ec;
    std::filesystem::create_directories(o.data_dir, ec);
    if (ec) {
        return R(Errc::storage_error,
                 "cannot create data dir '" + o.data_dir + "': " + ec.message());
    }
    auto store = storage::KeyStore::open(o.data_dir, o.store);
    if (!store) {
        return R(store.error().code(), "data dir '" + o.data_dir + "': " + store.error().detail());
    }
    node->store_ = std::move(store).value();

    auto transport = net::Transport::open(io, *listen, o.transport);
    if (!transport) return R(transport.error());
    node->transport_ = std::move(transport).value();
    net::PeerPoolOptions pool;
    pool.cluster_key = o.transport.cluster_key;
    pool.request_timeout = o.replica_timeout;
    node->peers_ = std::make_unique<net::PeerPool>(io, pool);

    if (!o.advertise.empty()) {
        auto advertise = net::parse_host_port(o.advertise);
        if (!advertise)
            return R(Errc::invalid_argument, "advertise: " + advertise.error().message());
        node->advertise_ = *advertise;
    } else {
        if (listen->host == "0.0.0.0" || listen->host == "::") {
            return R(Errc::invalid_argument,
                     "listening on " + listen->host +
                         " needs an advertise address that peers can reach");
        }
        node->advertise_ = net::HostPort{listen->host, node->transport_->port()};
    }
    node->advertise_text_ = node->advertise_.to_string();

    if (auto mark = check_cluster_mark(*node->store_, o.transport.cluster_key); !mark) {
        return R(Errc::storage_error, "data dir '" + o.data_dir + "': " + mark.error().message());
    }
    auto ids = load_vnode_ids(*node->store_, o.vnodes);
    const bool place_later = !ids && ids.code() == Errc::not_found && !o.join.empty() &&
                             o.placement == VnodePlacement::balanced;
    if (!place_later) {
        // A data dir with ids, or a new one that starts a ring or takes SHA-1 ids.
        if (!ids && ids.code() == Errc::not_found) {
            ids = load_or_create_vnode_ids(*node->store_, node->advertise_text_, o.vnodes);
        }
        if (!ids) {
            return R(ids.error().code(), "data dir '" + o.data_dir + "': " + ids.error().detail());
        }
        node->adopt_ids(std::move(ids).value());
    }
    return node;
}

void Node::adopt_ids(std::vector<chord::NodeId> ids) {
    ids_ = std::move(ids);
    for (const auto& id : ids_) {
        sorted_ids_.emplace_back(id, vnodes_.size());
        vnodes_.push_back(std::make_unique<chord::Protocol>(chord::Peer{id, advertise_text_},
                                                            options_.protocol, rng_));
    }
    std::sort(sorted_ids_.begin(), sorted_ids_.end());
    counters_.resize(vnodes_.size());
    repair_memo_.resize(vnodes_.size());
    arc_synced_.assign(vnodes_.size(), false);
    repair_seen_predecessor_.resize(vnodes_.size());
    arc_epoch_.assign(vnodes_.size(), 0);
    holders_memo_.resize(vnodes_.size());
}

// --- lifecycle --------------------------------------------------------------------------

void Node::start(NodeCallback ready) {
    ready_ = std::move(ready);
    join_deadline_ = now() + options_.join_timeout;
    if (vnodes_.empty()) {
        place_vnodes();
    } else {
        join_ring();
    }
}

void Node::place_vnodes() {
    if (stopped_) return;
    // The walk asks the processes it learns of, as chordkv::Client does, within the time left
    // to join (and RingViewOptions' default bounds).
    const RingViewOptions bounds;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(join_deadline_ - now());
    // Not ourselves: our sockets answer nothing until we join (a walk would wait it out).
    std::vector<std::string> seeds;
    for (const auto& seed : options_.join) {
        if (seed != advertise_text_) seeds.push_back(seed);
    }
    RingWalk walk(std::move(seeds), bounds.walk_processes_max,
                  RingWalk::Clock::now() + std::min(bounds.walk_timeout, left));
    if (!walker_) walker_ = std::make_unique<RingWalker>(*peers_);
    std::weak_ptr<int> alive = alive_;
    walker_->start(std::move(walk), [this, alive](const RingWalk& finished) {
        if (alive.expired() || stopped_) return;
        const auto ring = finished.vnodes();
        if (ring.empty()) {
            std::string message = "join through";
            for (const auto& seed : options_.join) {
                message += (&seed == &options_.join.front() ? " " : ",") + seed;
            }
            message += ": no seed answered a ring walk";
            if (!walker_->last_failure().empty()) message += " (" + walker_->last_failure() + ")";
            last_join_error_ = Error(Errc::unreachable, message);
            if (now() >= join_deadline_) {
                if (auto ready = std::move(ready_)) ready(Status(last_join_error_));
                return;
            }
            auto retry = std::make_shared<asio::steady_timer>(io_, kJoinRetryDelay);
            retry->async_wait([this, alive, retry](const boost::system::error_code& ec) {
                if (!ec && !alive.expired()) place_vnodes();
            });
            return;
        }
        // Cuts spread for our own successor-list length and replicas (R - 1 other processes).
        const chord::PlacementOptions placement{options_.protocol.successors,
                                                options_.replicas > 0 ? options_.replicas - 1 : 0};
        auto ids = chord::place_vnodes(ring, options_.vnodes, advertise_text_, placement);
        if (auto stored = store_vnode_ids(*store_, advertise_text_, ids); !stored) {
            if (auto ready = std::move(ready_)) {
                ready(Status(Errc::storage_error,
                             "data dir '" + options_.data_dir + "': " + stored.error().message()));
            }
            return;
        }
        adopt_ids(std::move(ids));
        join_ring();
    });
}

void Node::join_ring() {
    transport_->start([this](chord::Envelope e) { on_envelope(std::move(e)); },
                      [this](const std::shared_ptr<net::Connection>& from,
                             const net::FrameView& frame) { on_frame(from, frame); });
    transport_->on_frames_ahead(
        [this](const std::vector<net::FrameView>& frames) { prefetch_keys(frames); });
    if (options_.join.empty()) {
        // A new ring: every vnode of this process is a member from the start.
        std::vector<chord::Peer> members;
        for (const auto& vnode : vnodes_) members.push_back(vnode->self());
        for (auto& vnode : vnodes_) vnode->create(now(), members);
        joined_all();
    } else {
        join_vnode(0, 0);
    }
    pump();
}

void Node::join_vnode(std::size_t index, std::size_t seed_index) {
    if (stopped_) return;
    // The first vnode joins through a seed; the others through this process, whose first
    // vnode is then a member (the request is delivered in-process).
    const std::string via =
        index == 0 ? options_.join[seed_index % options_.join.size()] : advertise_text_;
    std::weak_ptr<int> alive = alive_;
    vnodes_[index]->join(
        now(), via, [this, alive, index, seed_index, via](chord::Time t, Status status) {
            if (alive.expired() || stopped_) return;
            if (status) {
                if (index + 1 < vnodes_.size()) {
                    // Continue from a fresh stack: this callback runs inside the protocol.
                    asio::post(io_, [this, alive, index] {
                        if (!alive.expired()) join_vnode(index + 1, 0);
                        pump();
                    });
                } else {
                    joined_all();
                }
                return;
            }
            last_join_error_ = Error(status.error().code(),
                                     "join through " + via + ": " + status.error().message());
            if (t >= join_deadline_) {
                if (auto ready = std::move(ready_)) ready(Status(last_join_error_));
                return;
            }
            // Try the next seed after a pause.
            auto retry = std::make_shared<asio::steady_timer>(io_, kJoinRetryDelay);
            retry->async_wait(
                [this, alive, retry, index, seed_index](const boost::system::error_code& ec) {
                    if (ec || alive.expired()) return;
                    join_vnode(index, seed_index + 1);
                    pump();
                });
        });
}

void Node::joined_all() {
    // A node that (re)joined owns new arcs: hand them over before anything else.
    for (std::size_t i = 0; i < vnodes_.size(); ++i) repair_urgent_.push_back(i);
    arm_repair();
    arm_purge();
    if (auto ready = std::move(ready_)) ready(Status{});
}

void Node::leave(NodeCallback done) {
    begin_leave(nullptr, std::move(done), /*leave_anyway=*/true);
}

void Node::leave_ring(NodeCallback done, Status handoff_status) {
    auto pending = std::make_shared<std::size_t>(0);
    auto result = std::make_shared<Status>(std::move(handoff_status));
    auto finish = [this, done, pending, result]() {
        if (*pending > 0) return;
        // Let the last acks and replies go out before closing the sockets.
        asio::post(io_, [this, done, result, alive = std::weak_ptr<int>(alive_)] {
            if (alive.expired()) return;
            stop();
            if (done) done(*result);
        });
    };
    // Every member vnode leaves at once, each told which others leave with it: a run of our
    // vnodes that are ring neighbours is then closed as one gap, so the neighbours outside learn
    // the first vnode that stays at once rather than after failure detection (Protocol::leave).
    std::vector<chord::NodeId> leaving;
    for (auto& vnode : vnodes_) {
        if (vnode->ring_state().state != chord::MemberState::member) continue;
        leaving.push_back(vnode->self().id);
        ++*pending;
    }
    if (*pending == 0) {
        finish();
        return;
    }
    for (auto& vnode : vnodes_) {
        if (vnode->ring_state().state != chord::MemberState::member) continue;
        vnode->leave(now(), leaving, [pending, result, finish](chord::Time, Status status) {
            if (!status && *result) *result = status;
            --*pending;
            finish();
        });
    }
    pump();
}

void Node::stop() {
    if (stopped_) return;
    stopped_ = true;
    timer_.cancel();
    repair_timer_.cancel();
    gc_timer_.cancel();
    gc_release();
    purge_timer_.cancel();
    if (peers_) peers_->close();
    if (transport_) transport_->close();
}

// --- message flow -----------------------------------------------------------------------

chord::Protocol* Node::first_member() {
    for (auto& vnode : vnodes_) {
        if (vnode->ring_state().state == chord::MemberState::member) return vnode.get();
    }
    return nullptr;
}

chord::Protocol* Node::route(const chord::Envelope& envelope) {
    if (!envelope.to_id) return first_member();
    for (auto& vnode : vnodes_) {
        if (vnode->self().id == *envelope.to_id) return vnode.get();
    }
    return nullptr;
}

void Node::on_envelope(chord::Envelope envelope) {
    if (stopped_) return;
    if (chord::Protocol* vnode = route(envelope)) vnode->handle(now(), envelope);
    pump();
}

void Node::pump() {
    if (stopped_ || pumping_) return;
    pumping_ = true;
    std::weak_ptr<int> alive = alive_;
    for (auto& vnode : vnodes_) {
        for (auto& e : vnode->take_outbox()) {
            if (e.to_address == advertise_text_) {
                // Another vnode of this process: deliver in-process, on a fresh stack.
                asio::post(io_, [this, alive, e = std::move(e)]() mutable {
                    if (!alive.expired()) on_envelope(std::move(e));
                });
            } else {
                transport_->send(e);
            }
        }
    }
    pumping_ = false;
    // Every change of a predecessor, as it happens (the protocol just ran): sampling only at
    // repair rounds missed a predecessor that dropped out and came back in between, and its
    // arc stayed "settled" with stale copies.
    note_predecessors();
    arm_timer();
}

void Node::arm_timer() {
    if (stopped_) return;
    chord::Time deadline = chord::Time::max();
    for (const auto& vnode : vnodes_) deadline = std::min(deadline, vnode->next_deadline());
    // The vnodes' deadlines (stabilize, fix_fingers, RPC timeouts, each jittered) are rounded
    // up to the next kTimerTick, so one wake-up serves every vnode due within the tick, and
    // the timer is set again only when the rounded deadline moves: at 128 vnodes the exact
    // deadlines set an idle process's timer over a thousand times a second, each a wake-up.
    if (deadline != chord::Time::max()) {
        const auto since = deadline.time_since_epoch();
        const auto ticks = (since + kTimerTick - chord::Duration(1)) / kTimerTick;
        deadline = chord::Time(ticks * kTimerTick);
    }
    if (deadline == timer_at_) return;
    timer_at_ = deadline;
    if (deadline == chord::Time::max()) {
        timer_.cancel();
        return;
    }
    timer_.expires_at(deadline);
    std::weak_ptr<int> alive = alive_;
    timer_.async_wait([this, alive](const boost::system::error_code& ec) {
        if (ec || alive.expired()) return;  // re-armed or cancelled
        on_timer();
    });
}

void Node::on_timer() {
    if (stopped_) return;
    timer_at_ = chord::Time::max();
    const chord::Time t = now();
    for (auto& vnode : vnodes_) {
        if (vnode->next_deadline() <= t) vnode->tick(t);
    }
    pump();
}

void Node::lookup(std::string_view key, chord::LookupCallback done) {
    chord::Protocol* vnode = first_member();
    if (!vnode || stopped_) {
        done(now(), Result<chord::LookupResult>(Errc::shutting_down, "no vnode is a ring member"));
        return;
    }
    vnode->lookup(now(), chord::NodeId::hash(key), std::move(done));
    pump();
}

// --- admin requests over TCP ------------------------------------------------------------

net::InfoReply Node::info(bool keys) const {
    net::InfoReply out;
    out.address = advertise_text_;
    out.version = kVersion;
    for (const auto& vnode : vnodes_) {
        const auto& ring = vnode->ring_state();
        const auto& stats = vnode->stats();
        net::VnodeInfo v;
        v.id = ring.self.id;
        v.state = static_cast<std::uint8_t>(ring.state);
        v.predecessor = ring.predecessor;
        v.successors = ring.successors;
        for (const auto& f : ring.fingers) v.fingers_set += f ? 1 : 0;
        v.lookups_started = stats.lookups_started;
        v.lookups_failed = stats.lookups_failed;
        v.lookup_hops = stats.lookup_hops;
        v.rpc_timeouts = stats.rpc_timeouts;
        const std::size_t index = out.vnodes.size();
        const VnodeCounters& c = counters_[index];
        v.handoff_keys_sent = c.handoff_sent;
        v.handoff_keys_received = c.handoff_received;
        v.repair_keys_sent = c.repair_sent;
        v.repair_keys_received = c.repair_received;
        v.arc_settled = arc_settled(index);
        if (keys) {
            // Span (previous local vnode, vnode] = replica part (previous, predecessor] +
            // owned arc (predecessor, vnode]. A vnode that is not a member owns nothing yet.
            const chord::NodeId from = previous_local(index).value_or(ring.self.id);
            auto span = store_->count(from, ring.self.id);
            if (span) {
                v.tombstones = span->tombstones;
                std::uint64_t owned = 0;
                if (ring.state == chord::MemberState::member && ring.predecessor) {
                    if (auto arc = store_->count(ring.predecessor->id, ring.self.id)) {
                        owned = arc->live;
                    }
                }
                v.keys_owned = owned;
                v.replica_keys = span->live >= owned ? span->live - owned : 0;
                out.keys_counted = true;
            }
        }
        out.vnodes.push_back(std::move(v));
    }
    out.tombstones_purged = tombstones_purged_;
    out.copies_dropped = copies_dropped_;
    out.expired_writes = expired_writes_;
    const auto& t = transport_->stats();
    out.datagrams_received = t.datagrams_received;
    out.frames_dropped = t.frames_dropped;
    out.frames_unauthenticated = t.frames_unauthenticated;
    out.tcp_connections_dropped = t.tcp_connections_dropped;
    out.frames_replayed = t.frames_replayed;
    out.repair_keys_pulled = repair_keys_pulled_;
    out.repair_keys_pushed = repair_keys_pushed_;
    out.repair_rounds = repair_rounds_;
    return out;
}

void Node::info_with_keys(std::function<void(Result<net::InfoReply>)> done) {
    // What to count, read here on the io thread; the counting reads every key of the spans.
    struct Span {
        chord::NodeId from;                        // (from, to]: the replica part and the arc
        chord::NodeId to;                          // the vnode
        std::optional<chord::NodeId> predecessor;  // a member's: (predecessor, to] is owned
    };
    std::vector<Span> spans;
    spans.reserve(vnodes_.size());
    for (std::size_t index = 0; index < vnodes_.size(); ++index) {
        const auto& ring = vnodes_[index]->ring_state();
        Span span{previous_local(index).value_or(ring.self.id), ring.self.id, std::nullopt};
        if (ring.state == chord::MemberState::member && ring.predecessor) {
            span.predecessor = ring.predecessor->id;
        }
        spans.push_back(span);
    }
    if (!store_reader_) store_reader_ = std::make_unique<StoreReader>();
    std::shared_ptr<const storage::Snapshot> snapshot = store_->snapshot();
    auto job = [store = store_.get(), snapshot, spans = std::move(spans), done, reply = info(false),
                alive = std::weak_ptr<int>(alive_), &io = io_]() mutable {
        auto counted = [&]() -> Result<net::InfoReply> {
            for (std::size_t i = 0; i < spans.size() && i < reply.vnodes.size(); ++i) {
                const Span& span = spans[i];
                net::VnodeInfo& v = reply.vnodes[i];
                auto all = store->count(span.from, span.to, snapshot.get());
                if (!all) return all.error();
                std::uint64_t owned = 0;
                if (span.predecessor) {
                    auto arc = store->count(*span.predecessor, span.to, snapshot.get());
                    if (!arc) return arc.error();
                    owned = arc->live;
                }
                v.tombstones = all->tombstones;
                v.keys_owned = owned;
                v.replica_keys = all->live >= owned ? all->live - owned : 0;
            }
            reply.keys_counted = true;
            return std::move(reply);
        }();
        snapshot.reset();  // released on this thread, while the store surely lives
        asio::post(io, [alive, done, counted = std::move(counted)]() mutable {
            if (!alive.expired()) done(std::move(counted));
        });
    };
    if (!store_reader_->add(std::move(job), kKeyCountsQueuedMax)) {
        done(Error(Errc::busy, std::to_string(kKeyCountsQueuedMax) +
                                   " key counts are already waiting; try again later"));
    }
}

void Node::digest_async(const chord::NodeId& from_exclusive, const chord::NodeId& to_inclusive,
                        std::uint32_t buckets, std::function<void(Result<storage::ArcDigest>)> done,
                        std::shared_ptr<const storage::Snapshot> snapshot) {
    if (!store_reader_) store_reader_ = std::make_unique<StoreReader>();
    auto job = [store = store_.get(), from_exclusive, to_inclusive, buckets, done, snapshot,
                alive = std::weak_ptr<int>(alive_), &io = io_]() mutable {
        auto digest = store->digest(from_exclusive, to_inclusive, buckets, snapshot.get());
        snapshot.reset();  // released on this thread, while the store surely lives
        // `done` (it may hold a connection) leaves this thread inside the posted handler.
        asio::post(io, [alive, done = std::move(done), digest = std::move(digest)]() mutable {
            if (!alive.expired()) done(std::move(digest));
        });
    };
    if (!store_reader_->add(std::move(job), kDigestsQueuedMax)) {
        done(Error(Errc::busy, std::to_string(kDigestsQueuedMax) +
                                   " arc digests are already waiting; try again later"));
    }
}

void Node::on_frame(const std::shared_ptr<net::Connection>& from, const net::FrameView& frame) {
    if (stopped_) return;
    // Puts wait for the end of the turn to share a write (flush_puts); any other request sees
    // them written first, so that a get pipelined after a put on one connection reads it.
    if (!pending_puts_.empty() &&
        frame.type != static_cast<std::uint16_t>(net::DataType::put_request)) {
        flush_puts();
    }
    const std::string* key =
        options_.transport.cluster_key.empty() ? nullptr : &options_.transport.cluster_key;
    auto send_error = [from, key](std::uint64_t request_id, const Error& error) {
        net::ErrorReply reply{request_id, error.code().value(), error.message()};
        from->send(net::encode_admin(reply, key));
    };
    switch (static_cast<net::AdminType>(frame.type)) {
        case net::AdminType::info_request: {
            auto request = net::decode_admin<net::InfoRequest>(frame.payload);
            if (!request) break;
            const std::uint64_t id = request->request_id;
            if (!request->keys) {
                auto reply = info(false);
                reply.request_id = id;
                from->send(net::encode_admin(reply, key));
                return;
            }
            std::weak_ptr<net::Connection> weak = from;
            info_with_keys([weak, id, key, send_error](Result<net::InfoReply> reply) {
                auto connection = weak.lock();
                if (!connection) return;
                if (!reply) {
                    send_error(id, reply.error());
                    return;
                }
                reply->request_id = id;
                connection->send(net::encode_admin(*reply, key));
            });
            return;
        }
        case net::AdminType::lookup_request: {
            auto request = net::decode_admin<net::LookupRequest>(frame.payload);
            if (!request) break;
            const std::uint64_t id = request->request_id;
            const chord::NodeId key_id = chord::NodeId::hash(request->key);
            std::weak_ptr<net::Connection> weak = from;
            lookup(request->key, [weak, id, key_id, key, send_error](
                                     chord::Time, Result<chord::LookupResult> r) {
                auto connection = weak.lock();
                if (!connection) return;
                if (!r) {
                    send_error(id, r.error());
                    return;
                }
                net::LookupReply reply{id, key_id, r->owner, r->replicas, r->hops, r->timeouts};
                connection->send(net::encode_admin(reply, key));
            });
            return;
        }
        case net::AdminType::leave_request: {
            auto request = net::decode_admin<net::LeaveRequest>(frame.payload);
            if (!request) break;
            on_leave_request(from, *request);
            return;
        }
        default:
            break;
    }
    switch (static_cast<net::DataType>(frame.type)) {
        case net::DataType::put_request: {
            auto request = net::decode_admin<net::PutRequest>(frame.payload);
            if (!request) break;
            on_put(from, std::move(request).value());
            return;
        }
        case net::DataType::get_request: {
            auto request = net::decode_admin<net::GetRequest>(frame.payload);
            if (!request) break;
            on_get(from, std::move(request).value());
            return;
        }
        case net::DataType::replicate_request: {
            auto request = net::decode_admin<net::ReplicateRequest>(frame.payload);
            if (!request) break;
            on_replicate(from, *request);
            return;
        }
        case net::DataType::replicate_writes_request: {
            auto request = net::decode_admin<net::ReplicateWritesRequest>(frame.payload);
            if (!request) break;
            on_replicate_writes(from, std::move(request).value());
            return;
        }
        case net::DataType::sync_digest_request: {
            auto request = net::decode_admin<net::SyncDigestRequest>(frame.payload);
            if (!request) break;
            on_sync_digest(from, *request);
            return;
        }
        case net::DataType::sync_scan_request: {
            auto request = net::decode_admin<net::SyncScanRequest>(frame.payload);
            if (!request) break;
            on_sync_scan(from, *request);
            return;
        }
        case net::DataType::replicate_batch_request: {
            auto request = net::decode_admin<net::ReplicateBatchRequest>(frame.payload);
            if (!request) break;
            on_replicate_batch(from, std::move(*request));
            return;
        }
        case net::DataType::replica_set_request: {
            auto request = net::decode_admin<net::ReplicaSetRequest>(frame.payload);
            if (!request) break;
            on_replica_set(from, *request);
            return;
        }
        case net::DataType::read_replica_request: {
            auto request = net::decode_admin<net::ReadReplicaRequest>(frame.payload);
            if (!request) break;
            on_read_replica(from, *request);
            return;
        }
        default:
            // With the caller's request id, so that its call fails now rather than at its
            // deadline (a message type newer than this build, during a rolling upgrade).
            send_error(net::request_id_of(frame.payload),
                       Error(Errc::invalid_argument,
                             "unknown request type " + std::to_string(frame.type)));
            return;
    }
    // A request that does not decode: the peer speaks something else; drop it.
    from->close();
}

}  // namespace chordkv
