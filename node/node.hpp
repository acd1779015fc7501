// chordkv::Node: one chordkv process's ring membership, embeddable in any program.
//
// A Node runs V vnodes (chord::Protocol instances) over one Transport (UDP + TCP on one port)
// and one KeyStore (RocksDB), on an io_context that the embedder owns and runs:
//
//     boost::asio::io_context io(1);           // run by one thread (see Threading)
//     chordkv::NodeOptions options;            // defaults: 127.0.0.1:7400, 8 vnodes
//     options.join = {"10.0.0.1:7400"};        // empty: start a new ring
//     auto node = chordkv::Node::open(io, options);
//     if (!node) { log(node.error().message()); return; }
//     (*node)->start([](chordkv::Status s) { log(s ? "joined" : s.error().message()); });
//     io.run();
//
// The vnode ids are kept in the store, so a restart on the same data dir returns to the same
// ring positions. One steady_timer is re-armed to the earliest protocol deadline; messages
// between vnodes of the same process are delivered in-process, never through a socket.
//
// Threading: every method, and every callback, runs on the io_context. If the io_context runs
// on several threads, call the Node only from handlers it posted (its operations are not
// internally synchronized). Destroy the Node after the io_context has stopped running, or from
// a handler on it after stop(). Run by one thread, construct the io_context with concurrency
// hint 1, as chordd and NodeThread do: Asio then queues the handlers that the thread posts or
// completes at once in a queue of the thread's own, without waking its reactor by a syscall.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "chord/hlc.hpp"
#include "chord/protocol.hpp"
#include "chord/result.hpp"
#include "net/address.hpp"
#include "net/admin.hpp"
#include "net/admin_codec.hpp"
#include "net/data.hpp"
#include "net/peer_pool.hpp"
#include "net/replication_queue.hpp"
#include "net/transport.hpp"
#include "node/ring_walker.hpp"
#include "storage/key_store.hpp"

namespace chordkv {

enum class VnodePlacement { balanced, hashed };

struct NodeOptions {
    // Address to bind UDP and TCP on. Port 0 picks a free port (tests).
    std::string listen = "127.0.0.1:7400";
    // Address peers use to reach this process; empty = the listen address (with the real
    // port when listening on port 0).
    std::string advertise;
    // Seeds to join through, tried in order; empty = start a new ring.
    std::vector<std::string> join;
    // RocksDB data dir; created when missing. Holds the vnode ids.
    std::string data_dir = "chordkv-data";
    // Ring positions this process owns; a bigger machine takes more (its weight).
    std::uint32_t vnodes = 8;
    // Where a new data dir that joins a ring puts its vnodes: `balanced` walks the ring
    // through the seeds first and takes its share from the processes holding the most
    // (chord/placement.hpp); `hashed` uses SHA-1("<advertise>#<i>") (what HashRing::point_id
    // computes from an address). The first process of a ring, and a data dir that has ids,
    // keep theirs either way.
    VnodePlacement placement = VnodePlacement::balanced;
    // Protocol settings (successor list length r, timers, limits).
    chord::ProtocolOptions protocol;
    // Transport settings, including the cluster key (empty = no frame MAC).
    net::TransportOptions transport;
    // Key store settings.
    storage::KeyStoreOptions store;
    // Copies of every key: the owner and the next R-1 distinct processes on its successor list.
    std::size_t replicas = 3;
    // Copies (the owner's included) that must acknowledge a write before the client is
    // answered; default 2, a majority of 3. Capped at the replicas that exist.
    std::size_t write_acks = 2;
    // How long the owner waits for replicas to answer a write or a read.
    std::chrono::milliseconds replica_timeout = std::chrono::seconds(2);
    // Replica maintenance: how often one vnode's arc is compared with its replica holders
    // (round robin over the vnodes), in how many digest buckets, and how many keys move per
    // batch. Bounds the repair traffic; a joining node's arc arrives the same way.
    std::chrono::milliseconds repair_interval = std::chrono::milliseconds(500);
    // An arc that is synced, has the same holders and whose writes since its last round all
    // reached their holders is compared again only this often (a holder that lost its data,
    // e.g. a disk replaced, is found within it).
    std::chrono::milliseconds repair_full_interval = std::chrono::seconds(60);
    std::size_t repair_buckets = 64;
    std::size_t repair_batch_keys_max = 512;
    // Deletes are tombstones, replicated like values; a tombstone older than this is purged
    // (checked every purge_interval). A replica cut off for longer than the grace period
    // could bring a deleted key back, as in Cassandra (gc_grace_seconds).
    std::chrono::milliseconds tombstone_grace = std::chrono::hours(24);
    std::chrono::milliseconds purge_interval = std::chrono::minutes(10);
    // How long a graceful leave may spend handing its arcs over before it leaves anyway.
    std::chrono::milliseconds handoff_timeout = std::chrono::seconds(120);
    // How long start() keeps retrying the seeds before reporting failure.
    std::chrono::milliseconds join_timeout = std::chrono::seconds(30);
    // RNG seed for timer jitter and backoff; 0 = from std::random_device.
    std::uint64_t seed = 0;
};

using NodeCallback = std::function<void(Status status)>;

class Node {
public:
    // Binds the sockets, opens the store and loads (or creates) the vnode ids; a new data dir
    // that joins with balanced placement gets its ids in start(). Nothing is sent until
    // start(). Errors: the bind error (address in use, ...), invalid_argument for a bad
    // address or vnode count, storage_error/corruption for the data dir.
    static Result<std::unique_ptr<Node>> open(boost::asio::io_context& io, NodeOptions options);
    ~Node();
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

    // Creates a new ring (no seeds) or joins through the seeds; `ready` gets success once every
    // vnode is a ring member, or the last join error after join_timeout. A new data dir with
    // balanced placement first walks the ring through the seeds (retried until join_timeout),
    // places its vnodes and persists their ids, then joins.
    void start(NodeCallback ready);
    // Graceful leave: hands every arc this process holds to the processes that take it over
    // (the new owner and its replica holders, in batches from a RocksDB snapshot, while
    // writes keep being served and replicated), then every vnode leaves the ring, then the
    // sockets close. `done` gets success when every batch and every neighbour acknowledged,
    // the first failure otherwise; the node is stopped either way.
    void leave(NodeCallback done);
    // Called once the node has stopped after a leave that a client asked for (chordctl
    // leave, net::LeaveRequest); an embedder such as chordd exits then.
    void on_left(NodeCallback handler) { left_handler_ = std::move(handler); }
    // Stops at once (no goodbyes): closes sockets and timers. Idempotent.
    void stop();

    // Finds the owner of `key` (and its replica set) starting from this node's first vnode.
    void lookup(std::string_view key, chord::LookupCallback done);

    const net::HostPort& advertise() const noexcept { return advertise_; }
    std::uint16_t port() const { return transport_->port(); }
    // Empty until start() has placed them (a new data dir joining with balanced placement).
    const std::vector<chord::NodeId>& vnode_ids() const noexcept { return ids_; }
    // Every vnode's state and counters, as served to chordctl. With `keys`, also how many
    // keys each vnode owns and holds as a replica (reads every key's header: a stats call,
    // not a health check).
    net::InfoReply info(bool keys = false) const;
    // info(true) without stalling the io thread: the keys are counted on another thread, over
    // a snapshot, and `done` runs on the io_context (not at all when the Node is destroyed
    // first). busy when kKeyCountsQueuedMax counts are already waiting.
    void info_with_keys(std::function<void(Result<net::InfoReply>)> done);
    static constexpr std::size_t kKeyCountsQueuedMax = 4;
    // Anti-entropy digests (ours and those peers ask for) waiting for the thread that counts
    // keys, which computes them off the io thread; a peer's request beyond it is answered busy.
    static constexpr std::size_t kDigestsQueuedMax = 32;
    storage::KeyStore& store() noexcept { return *store_; }

private:
    Node(boost::asio::io_context& io, NodeOptions options);
    chord::Time now() const { return std::chrono::steady_clock::now(); }
    void on_envelope(chord::Envelope envelope);
    void on_frame(const std::shared_ptr<net::Connection>& from, const net::FrameView& frame);
    // The frames of one read, before on_frame: starts loading the cache entries of the keys
    // their gets and puts name (KeyStore::prefetch).
    void prefetch_keys(const std::vector<net::FrameView>& frames);
    chord::Protocol* route(const chord::Envelope& envelope);
    chord::Protocol* first_member();
    void pump();
    void arm_timer();
    void on_timer();
    // Creates the vnodes with these ids (open(), or start() after placing them).
    void adopt_ids(std::vector<chord::NodeId> ids);
    // Walks the ring through the seeds and places the vnodes; then join_ring().
    void place_vnodes();
    void join_ring();
    void join_vnode(std::size_t index, std::size_t seed_index);
    void joined_all();

    // Data path (DESIGN.md "Data path").
    using ConnectionPtr = std::shared_ptr<net::Connection>;
    const std::string* cluster_key() const;
    template <typename T>
    void reply(const ConnectionPtr& to, const T& message);
    void reply_error(const ConnectionPtr& to, std::uint64_t request_id, const Error& error);
    // The member vnode whose arc (predecessor, self] holds `key_id`, or nullptr.
    chord::Protocol* owner_vnode(const chord::NodeId& key_id);
    // The next distinct processes after `vnode` on its successor list, other than this one.
    std::vector<std::string> replica_addresses(const chord::Protocol& vnode,
                                               std::size_t count) const;
    // replica_addresses()' fallback (a successor list naming too few processes), per vnode.
    struct HoldersMemo {
        chord::Time at{};
        std::size_t count = 0;
        std::vector<chord::NodeId> successors;  // the list it was computed with
        std::vector<std::string> holders;
    };
    // 1 s: with 128 vnodes a vnode gets a put every ~50 ms, so a 50 ms memo was nearly always
    // stale (3 processes at R=3: 8,500-9,400 puts/s with it, 13,600-15,700 with 1 s).
    static constexpr std::chrono::milliseconds kHoldersMemoFor{1000};
    mutable std::vector<HoldersMemo> holders_memo_;
    // Runs `coordinate` if a vnode of this process owns `key`; otherwise looks the owner up
    // and answers Redirect (or coordinates anyway when the owner turns out to be here).
    void route_request(const ConnectionPtr& from, std::uint64_t request_id, const std::string& key,
                       std::function<void(chord::Protocol&)> coordinate);
    void on_put(const ConnectionPtr& from, net::PutRequest request);
    void on_get(const ConnectionPtr& from, net::GetRequest request);
    void on_replicate(const ConnectionPtr& from, const net::ReplicateRequest& request);
    void on_replicate_writes(const ConnectionPtr& from, net::ReplicateWritesRequest request);
    void on_read_replica(const ConnectionPtr& from, const net::ReadReplicaRequest& request);
    void on_leave_request(const ConnectionPtr& from, const net::LeaveRequest& request);
    void on_replica_set(const ConnectionPtr& from, const net::ReplicaSetRequest& request);

    // Per-vnode bookkeeping. A vnode's span is (the previous vnode of this process, vnode]:
    // its own arc (predecessor, vnode] and, before it, the keys this process holds as a
    // replica for the owners in between. Every stored key lies in exactly one span.
    std::size_t index_of(const chord::Protocol& vnode) const;
    std::size_t span_vnode(const chord::NodeId& key_id) const;
    std::optional<chord::NodeId> previous_local(std::size_t index) const;
    // Whether a vnode's arc is known to be complete here: false from a change of its
    // predecessor (a join or failure next to it; a restart) until a repair round with every
    // replica holder finishes. Plain reads of an unsettled arc ask the replicas too.
    bool arc_settled(std::size_t index) const;
    void note_predecessors();
    struct VnodeCounters {
        std::uint64_t handoff_sent = 0;
        std::uint64_t handoff_received = 0;
        std::uint64_t repair_sent = 0;
        std::uint64_t repair_received = 0;
    };

    // Graceful leave (node/handoff.cpp).
    struct Handoff;
    using HandoffDone = std::function<void(Status status, std::uint64_t keys_sent)>;
    // leave_anyway: leave the ring even when the handoff failed (SIGTERM: the operator wants
    // the process gone; its keys still have R-1 copies); else stay (chordctl leave answers
    // the error and the process keeps serving).
    void begin_leave(HandoffDone handed_off, NodeCallback done, bool leave_anyway);
    void handoff_next(const std::shared_ptr<Handoff>& job);
    void handoff_batch(const std::shared_ptr<Handoff>& job);
    void leave_ring(NodeCallback done, Status handoff_status);

    // Dropping copies held for owners whose replica set no longer has this process
    // (node/replica_gc.cpp); runs after a vnode's repair round, as part of it.
    struct GcJob;
    void gc_start(std::size_t index);
    void gc_done();
    // The walk ends before the end of its span: the vnode's next round comes soon (backing
    // off while it keeps stopping) and its walk resumes where this one stopped.
    void gc_stopped(const std::shared_ptr<GcJob>& job);
    void gc_step(const std::shared_ptr<GcJob>& job);
    void gc_owner(const std::shared_ptr<GcJob>& job, const Result<chord::LookupResult>& found);
    void gc_decide(const std::shared_ptr<GcJob>& job, const chord::Peer& owner,
                   std::vector<std::string> holders);
    // With our digest of the sub-arc: asks every target for theirs.
    void gc_compare(const std::shared_ptr<GcJob>& job);
    // At stop(): releases the running job's snapshot (see gc_job_).
    void gc_release();
    void gc_push(const std::shared_ptr<GcJob>& job);

    // Tombstone purge.
    void arm_purge();
    void purge_round();

    // Replica maintenance (node/repair.cpp).
    struct RepairJob;
    void arm_repair();
    void repair_round();
    void repair_with(const std::shared_ptr<RepairJob>& job);
    struct RepairBucket;
    void repair_fill(const std::shared_ptr<RepairJob>& job);
    void repair_bucket_done(const std::shared_ptr<RepairJob>& job, bool failed);
    void repair_pull(const std::shared_ptr<RepairJob>& job,
                     const std::shared_ptr<RepairBucket>& bucket, std::optional<std::string> after);
    void repair_push(const std::shared_ptr<RepairJob>& job,
                     const std::shared_ptr<RepairBucket>& bucket, std::optional<std::string> after);
    void repair_done(const std::shared_ptr<RepairJob>& job);
    void repair_holder_failed(const std::shared_ptr<RepairJob>& job);
    // Our digest of job's arc against a holder's: starts syncing the buckets that differ.
    void repair_compare(const std::shared_ptr<RepairJob>& job, const net::SyncDigestReply& theirs);
    void on_sync_digest(const ConnectionPtr& from, const net::SyncDigestRequest& request);
    // The arc's digest (KeyStore::digest), computed on the store reader thread so a large arc
    // does not stall the io thread (at 0.8 us a key, an arc of 40,000 keys takes 30 ms);
    // `done` runs on the io_context, not at all when the Node is destroyed first. busy when
    // kDigestsQueuedMax digests are already waiting.
    // With a snapshot, the digest reads through it; the reader thread releases its reference
    // (while the store surely lives).
    void digest_async(const chord::NodeId& from_exclusive, const chord::NodeId& to_inclusive,
                      std::uint32_t buckets, std::function<void(Result<storage::ArcDigest>)> done,
                      std::shared_ptr<const storage::Snapshot> snapshot = nullptr);
    void on_sync_scan(const ConnectionPtr& from, const net::SyncScanRequest& request);
    void on_replicate_batch(const ConnectionPtr& from, net::ReplicateBatchRequest request);
    void coordinate_put(const ConnectionPtr& from, chord::Protocol& vnode, net::PutRequest request);
    // After the owner's copy is written: replicates the put and answers the client.
    void replicate_put(const ConnectionPtr& from, std::size_t vnode, std::uint64_t request_id,
                       std::string key, const storage::Record& record);
    // Writes the puts gathered since the last flush in one batch (one WAL record; with
    // sync_writes one fsync), then replicates and answers each (group commit). Runs at the end
    // of the io turn, or before any other request is handled (requests keep their order).
    void flush_puts();
    void coordinate_get(const ConnectionPtr& from, chord::Protocol& vnode, net::GetRequest request);
    std::uint64_t physical_ms() const;
    // invalid_argument for an empty key, too_large beyond the store's key limit.
    Status check_key(std::string_view key) const;

    boost::asio::io_context& io_;
    NodeOptions options_;
    net::HostPort advertise_;
    std::string advertise_text_;
    std::unique_ptr<storage::KeyStore> store_;
    std::unique_ptr<net::Transport> transport_;
    std::unique_ptr<net::PeerPool> peers_;
    // Writes to replicate, gathered per replica per io turn (created on first use; after
    // peers_, so destroyed before it).
    std::unique_ptr<net::ReplicationQueue> replication_;
    // The owner's puts of this io turn, written together by flush_puts().
    struct PendingPut {
        ConnectionPtr from;
        std::size_t vnode = 0;
        std::uint64_t request_id = 0;
        storage::Entry entry;
    };
    std::vector<PendingPut> pending_puts_;
    // The vectors of the last flush, emptied, kept for their capacity: a turn's puts do not
    // grow a vector (and move its entries) every turn.
    std::vector<PendingPut> spare_puts_;
    std::vector<storage::Entry> spare_entries_;
    std::vector<std::string_view> keys_ahead_;  // prefetch_keys' scratch
    bool puts_flush_posted_ = false;
    chord::HybridClock hlc_;
    std::mt19937_64 rng_;
    std::vector<chord::NodeId> ids_;
    std::vector<std::unique_ptr<chord::Protocol>> vnodes_;
    boost::asio::steady_timer timer_;
    boost::asio::steady_timer repair_timer_;
    boost::asio::steady_timer gc_timer_;  // pauses between a gc job's erased batches
    std::size_t repair_next_vnode_ = 0;
    // Vnodes to repair before the round robin continues: all of them once this process has
    // joined, and any whose predecessor (so whose arc) changed since it was last looked at.
    std::deque<std::size_t> repair_urgent_;
    std::vector<std::optional<chord::NodeId>> repair_seen_predecessor_;
    // Per vnode: how many times its predecessor changed. A repair job completes the handoff
    // of an arc only if no change happened while it ran (a predecessor that dropped out and
    // came back within one job is a change too).
    std::vector<std::uint64_t> arc_epoch_;
    // Per vnode: its replica holders as last seen by note_predecessors().
    std::vector<std::vector<std::string>> repair_seen_holders_;
    chord::Time holders_checked_at_{};
    // Copy dropping after a ring change: spans still to walk, from which vnode, not before.
    std::size_t gc_sweep_left_ = 0;
    std::size_t gc_sweep_next_ = 0;
    chord::Time gc_sweep_at_{};
    // The running copy-dropping job, whose snapshot stop() releases: handlers that hold the
    // job (a timer's, a digest's) can outlive the Node in the io_context, and must not release
    // a snapshot after the store is gone.
    std::weak_ptr<GcJob> gc_job_;
    bool repairing_ = false;
    std::uint64_t repair_keys_pulled_ = 0;
    std::uint64_t repair_keys_pushed_ = 0;
    std::uint64_t repair_rounds_ = 0;
    std::vector<VnodeCounters> counters_;
    // Per vnode: whether a write of its arc since its last repair round started lacks a copy
    // (too few holders, or one that failed or timed out: replicate_put), the holders
    // it was last synced with, and when it must be compared again even if nothing changed.
    struct RepairMemo {
        bool dirty = true;
        std::vector<std::string> holders;
        chord::Time check_by{};
        // Walks of the vnode's replica span in a row that kept copies because a new holder
        // still lacked them (replica_gc.cpp).
        int gc_deferrals = 0;
        // Where the last walk of the span stopped early (the lookup bound, a peer that failed
        // or a view that moved), for the next walk to go on from, and how many in a row did.
        std::optional<chord::NodeId> gc_resume;
        int gc_stops = 0;
    };
    std::vector<RepairMemo> repair_memo_;
    std::vector<bool> arc_synced_;
    // (id, index) of every vnode, sorted by id, for span_vnode().
    std::vector<std::pair<chord::NodeId, std::size_t>> sorted_ids_;
    boost::asio::steady_timer purge_timer_;
    std::uint64_t tombstones_purged_ = 0;
    std::uint64_t copies_dropped_ = 0;
    std::uint64_t expired_writes_ = 0;
    bool leaving_ = false;
    NodeCallback left_handler_;
    chord::Time timer_at_ = chord::Time::max();
    // The granularity of the vnodes' shared timer (arm_timer).
    static constexpr chord::Duration kTimerTick = std::chrono::milliseconds(10);
    NodeCallback ready_;
    // The ring walk of place_vnodes(), alive while it runs.
    std::unique_ptr<RingWalker> walker_;
    chord::Time join_deadline_{};
    Error last_join_error_{Errc::unreachable};
    bool stopped_ = false;
    bool pumping_ = false;
    // Handlers posted to the io_context hold a weak_ptr to this and do nothing once the Node
    // is gone.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
    // The thread that counts keys for info_with_keys() and computes digest_async()'s digests;
    // started on first use. Declared after store_, so destroyed (and joined) before it.
    class StoreReader;
    std::unique_ptr<StoreReader> store_reader_;
};

template <typename T>
void Node::reply(const ConnectionPtr& to, const T& message) {
    to->send_message(net::admin_type<T>(), message, cluster_key());
}

}  // namespace chordkv
