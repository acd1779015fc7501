// Graceful leave (DESIGN.md "Handoff"), tombstone purge, and the per-vnode bookkeeping that
// the handoff, repair and `chordctl stats` share.
//
// A leaving process pushes, from one RocksDB snapshot, in batches, each vnode's span
// (previous own vnode, vnode] — its arc (predecessor, vnode] and, before it, the keys held
// here as a replica — to the next R distinct processes clockwise after the vnode. That is
// every process that needs them: the arc's new owner and its R-1 holders, and for an owner
// in the span whose replica set lost this process, the one that joins it (its set is the
// next R-1 processes after it other than its own, of which at most one is among those R).
// Every batch goes to all its targets at once (ReplicateBatch, last writer wins, tombstones
// included so deletes stay deleted). Writes keep being served and replicated meanwhile; they
// reach the new owner because it is already this vnode's first replica holder. Then every
// vnode leaves the ring at once (Leave to predecessor and successor, acknowledged), each told
// which others leave with it, so that a run of them that are ring neighbours is closed as one
// gap: the neighbours outside learn the first vnode that stays (Node::leave_ring,
// chord::Protocol::leave).
#include <boost/asio/post.hpp>

#include "chord/hlc.hpp"
#include "net/admin_codec.hpp"
#include "node/node.hpp"
#include "node/sync_entry.hpp"

namespace chordkv {

// --- per-vnode bookkeeping --------------------------------------------------------------

std::size_t Node::index_of(const chord::Protocol& vnode) const {
    for (std::size_t i = 0; i < vnodes_.size(); ++i) {
        if (vnodes_[i].get() == &vnode) return i;
    }
    return 0;
}

std::size_t Node::span_vnode(const chord::NodeId& key_id) const {
    auto it = std::lower_bound(sorted_ids_.begin(), sorted_ids_.end(), key_id,
                               [](const std::pair<chord::NodeId, std::size_t>& p,
                                  const chord::NodeId& k) { return p.first < k; });
    if (it == sorted_ids_.end()) it = sorted_ids_.begin();
    return it->second;
}

std::optional<chord::NodeId> Node::previous_local(std::size_t index) const {
    if (sorted_ids_.size() < 2) return std::nullopt;
    for (std::size_t i = 0; i < sorted_ids_.size(); ++i) {
        if (sorted_ids_[i].second != index) continue;
        return sorted_ids_[i == 0 ? sorted_ids_.size() - 1 : i - 1].first;
    }
    return std::nullopt;
}

bool Node::arc_settled(std::size_t index) const {
    if (!arc_synced_[index]) return false;
    const auto& pred = vnodes_[index]->ring_state().predecessor;
    const std::optional<chord::NodeId> id =
        pred ? std::optional<chord::NodeId>(pred->id) : std::nullopt;
    return id == repair_seen_predecessor_[index];
}

// --- graceful leave ---------------------------------------------------------------------

struct Node::Handoff {
    struct Task {
        chord::NodeId from;  // the arc (from, to]
        chord::NodeId to;
        std::vector<std::string> targets;
        std::size_t vnode = 0;
    };
    std::vector<Task> tasks;
    std::size_t task = 0;
    std::optional<std::string> resume;  // within tasks[task]
    std::unique_ptr<storage::Snapshot> snapshot;
    std::uint64_t sent = 0;  // entries acknowledged, summed over targets
    std::size_t failures = 0;
    std::string first_failure;
    chord::Time deadline{};
    bool leave_anyway = false;
    HandoffDone handed_off;
    NodeCallback done;
};

void Node::begin_leave(HandoffDone handed_off, NodeCallback done, bool leave_anyway) {
    auto refuse = [&](Status status) {
        if (handed_off) handed_off(status, 0);
        if (done) done(status);
    };
    if (stopped_) return refuse(Status(Errc::shutting_down, "the node is stopped"));
    if (leaving_) return refuse(Status(Errc::shutting_down, "the node is already leaving"));
    leaving_ = true;
    repair_timer_.cancel();  // a repair round in flight finishes; no new one starts

    // The puts of this turn not yet written (flush_puts) go out with the arcs, not after them.
    flush_puts();
    auto job = std::make_shared<Handoff>();
    job->snapshot = store_->snapshot();
    job->deadline = now() + options_.handoff_timeout;
    job->leave_anyway = leave_anyway;
    job->handed_off = std::move(handed_off);
    job->done = std::move(done);
    for (std::size_t i = 0; i < vnodes_.size(); ++i) {
        const chord::Protocol& vnode = *vnodes_[i];
        const auto& ring = vnode.ring_state();
        if (ring.state != chord::MemberState::member || !ring.predecessor) continue;
        const chord::NodeId& self = ring.self.id;
        const chord::NodeId& pred = ring.predecessor->id;
        // The span starts at our previous vnode, unless the predecessor pointer is not inside
        // (previous, self) yet (pointers moving): then the arc alone.
        chord::NodeId from = previous_local(i).value_or(self);
        if (from != self && !chord::in_open(pred, from, self)) from = pred;
        auto targets = replica_addresses(vnode, options_.replicas);
        if (!targets.empty()) job->tasks.push_back({from, self, std::move(targets), i});
    }
    handoff_next(job);
}

void Node::handoff_next(const std::shared_ptr<Handoff>& job) {
    if (stopped_) return;
    const bool timed_out = now() >= job->deadline && job->task < job->tasks.size();
    if (job->task < job->tasks.size() && !timed_out) {
        handoff_batch(job);
        return;
    }
    job->snapshot.reset();
    Status status;
    if (timed_out) {
        status =
            Status(Errc::timed_out, "handoff: " + std::to_string(job->tasks.size() - job->task) +
                                        " arcs not handed over within the handoff timeout");
    } else if (job->failures > 0) {
        status = Status(Errc::unreachable,
                        "handoff: " + std::to_string(job->failures) +
                            " batches not acknowledged (first: " + job->first_failure + ")");
    }
    if (job->handed_off) job->handed_off(status, job->sent);
    if (!status && !job->leave_anyway) {
        // Stay a member and keep serving; replica maintenance resumes.
        leaving_ = false;
        arm_repair();
        if (job->done) job->done(status);
        return;
    }
    leave_ring(std::move(job->done), status);
}

void Node::handoff_batch(const std::shared_ptr<Handoff>& job) {
    const Handoff::Task& task = job->tasks[job->task];
    auto batch = store_->scan(task.from, task.to, options_.repair_batch_keys_max, job->resume,
                              job->snapshot.get(), detail::kSyncBatchBytesMax);
    if (!batch || batch->entries.empty()) {
        if (!batch) {
            ++job->failures;
            if (job->first_failure.empty()) job->first_failure = batch.error().message();
        }
        ++job->task;
        job->resume.reset();
        handoff_next(job);
        return;
    }
    std::vector<net::SyncEntry> entries = detail::to_sync(std::move(batch->entries));
    job->resume = batch->resume_after;
    if (!job->resume) {
        ++job->task;  // this batch ends the task
    }
    auto pending = std::make_shared<std::size_t>(task.targets.size());
    const std::size_t count = entries.size();
    const std::size_t vnode = task.vnode;
    auto request = detail::shared_batch(std::move(entries), net::SyncPurpose::handoff);
    std::weak_ptr<int> alive = alive_;
    for (const auto& target : task.targets) {
        peers_->call(
            target,
            [request, k = cluster_key()](std::uint64_t rid) {
                request->request_id = rid;
                return net::encode_admin(*request, k);
            },
            [this, alive, job, pending, count, vnode, target](Result<net::Frame> answer) {
                if (alive.expired() || stopped_) return;
                if (answer && answer->type == net::admin_type<net::ReplicateBatchReply>()) {
                    job->sent += count;
                    counters_[vnode].handoff_sent += count;
                } else {
                    ++job->failures;
                    if (job->first_failure.empty()) {
                        job->first_failure =
                            target + ": " +
                            (answer ? "answered type " + std::to_string(answer->type)
                                    : answer.error().message());
                    }
                }
                if (--*pending == 0) handoff_next(job);
            },
            options_.replica_timeout);
    }
}

void Node::on_leave_request(const ConnectionPtr& from, const net::LeaveRequest& request) {
    std::weak_ptr<net::Connection> weak = from;
    const std::uint64_t id = request.request_id;
    begin_leave(
        [this, weak, id](Status status, std::uint64_t sent) {
            auto connection = weak.lock();
            if (!connection) return;
            if (!status) {
                reply_error(
                    connection, id,
                    Error(status.error().code(), "not leaving: " + status.error().message()));
                return;
            }
            reply(connection, net::LeaveReply{id, sent});
        },
        [this](Status status) {
            if (!stopped_) return;  // the handoff failed and the node stays
            if (left_handler_) left_handler_(status);
        },
        /*leave_anyway=*/false);
}

// --- tombstone purge ----------------------------------------------------------------------

void Node::arm_purge() {
    if (stopped_) return;
    purge_timer_.expires_after(options_.purge_interval);
    std::weak_ptr<int> alive = alive_;
    purge_timer_.async_wait([this, alive](const boost::system::error_code& ec) {
        if (ec || alive.expired() || stopped_) return;
        purge_round();
    });
}

void Node::purge_round() {
    // At most this many tombstones per call, and calls per round: bounds the pause (the
    // purge runs on the io thread) while a backlog is worked off over the next rounds.
    constexpr std::size_t kPurgeBatch = 1000;
    constexpr int kPurgeCallsMax = 16;
    const std::uint64_t now_ms = physical_ms();
    const auto grace = static_cast<std::uint64_t>(options_.tombstone_grace.count());
    if (now_ms > grace) {
        const std::uint64_t before =
            chord::hlc_make(std::min(now_ms - grace, chord::kHlcPhysicalMsMax), 0);
        for (int call = 0; call < kPurgeCallsMax; ++call) {
            auto purged = store_->purge_tombstones(before, kPurgeBatch);
            if (!purged) break;  // a corrupt record: left for repair and the operator
            tombstones_purged_ += *purged;
            if (*purged < kPurgeBatch) break;
        }
    }
    arm_purge();
}

}  // namespace chordkv
