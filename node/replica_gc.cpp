// Dropping copies this process no longer has to hold (DESIGN.md "Handoff": a node that drops
// out of a key's replica set deletes its copy only after the new holder has it).
//
// After a repair round of vnode v, its replica span (previous own vnode, predecessor(v)] —
// keys held here for owners in between — is walked owner by owner with lookups:
//
//   lookup(cursor+1) ─► owner o ─► ReplicaSetRequest to o: the holders its writes go to
//     this process among them, or fewer than R-1  ─► keep (cursor = o)
//     otherwise                                    ─► push our entries of (cursor, o] to o
//                                                     and its set, batch by batch; once all
//                                                     acknowledged, erase those entries that
//                                                     still have the version pushed
//
// A wrong view only costs work: copies are erased after R holders acknowledged them, and an
// owner's own repair rounds restore any copy its replica set should have.
#include <boost/asio/post.hpp>

#include "net/admin_codec.hpp"
#include "node/node.hpp"
#include "node/sync_entry.hpp"

namespace chordkv {

struct Node::GcJob {
    std::size_t vnode = 0;
    chord::NodeId cursor;  // keys in (cursor, end] remain to be looked at
    chord::NodeId end;
    int lookups = 0;
    // The sub-arc (cursor, sub_to] being moved away, and where to.
    chord::NodeId sub_to;
    std::vector<std::string> targets;
    std::unique_ptr<storage::Snapshot> snapshot;
    std::optional<std::string> resume;
};

namespace {
// Lookups per span walk: a span holds about one owner per other process; more means the
// view is moving, and the next round continues.
constexpr int kGcLookupsMax = 64;
}  // namespace

void Node::gc_start(std::size_t index) {
    const chord::Protocol& vnode = *vnodes_[index];
    const auto& ring = vnode.ring_state();
    if (leaving_ || options_.replicas < 2 || ring.state != chord::MemberState::member ||
        !ring.predecessor) {
        return gc_done();
    }
    const chord::NodeId& self = ring.self.id;
    const chord::NodeId& pred = ring.predecessor->id;
    const chord::NodeId from = previous_local(index).value_or(self);
    if (from == pred || (from != self && !chord::in_open(pred, from, self))) return gc_done();
    auto any = store_->scan(from, pred, 1, std::nullopt);
    if (!any || any->entries.empty()) return gc_done();
    auto job = std::make_shared<GcJob>();
    job->vnode = index;
    job->cursor = from;
    job->end = pred;
    gc_step(job);
}

void Node::gc_done() {
    repairing_ = false;
    arm_repair();
}

void Node::gc_step(const std::shared_ptr<GcJob>& job) {
    if (stopped_) return;
    if (leaving_ || job->cursor == job->end || job->lookups >= kGcLookupsMax) return gc_done();
    chord::Protocol& vnode = *vnodes_[job->vnode];
    if (vnode.ring_state().state != chord::MemberState::member) return gc_done();
    ++job->lookups;
    std::weak_ptr<int> alive = alive_;
    vnode.lookup(now(), job->cursor.next(), [this, alive, job](chord::Time, auto found) {
        // Runs inside the protocol: continue on a fresh stack.
        boost::asio::post(io_, [this, alive, job, found = std::move(found)] {
            if (!alive.expired()) gc_owner(job, found);
        });
    });
    pump();
}

void Node::gc_owner(const std::shared_ptr<GcJob>& job, const Result<chord::LookupResult>& found) {
    if (stopped_) return;
    if (!found) return gc_done();
    const chord::Peer owner = found->owner;
    if (!chord::in_open_closed(owner.id, job->cursor, job->end)) return gc_done();
    if (owner.address == advertise_text_) {
        job->cursor = owner.id;  // our own vnode (pointers moving): keep
        return gc_step(job);
    }
    // The owner says who holds its arc: exactly the set its writes go to.
    std::weak_ptr<int> alive = alive_;
    peers_->call(
        owner.address,
        [id = owner.id, k = cluster_key()](std::uint64_t rid) {
            return net::encode_admin(net::ReplicaSetRequest{rid, id}, k);
        },
        [this, alive, job, owner](Result<net::Frame> answer) {
            if (alive.expired() || stopped_) return;
            if (!answer || answer->type != net::admin_type<net::ReplicaSetReply>()) {
                return gc_done();
            }
            auto reply = net::decode_admin<net::ReplicaSetReply>(answer->payload);
            if (!reply || !reply->owner) return gc_done();
            gc_decide(job, owner, std::move(reply->holders));
        },
        options_.replica_timeout);
}

void Node::gc_decide(const std::shared_ptr<GcJob>& job, const chord::Peer& owner,
                     std::vector<std::string> holders) {
    const bool ours = std::find(holders.begin(), holders.end(), advertise_text_) != holders.end();
    if (ours || holders.size() < options_.replicas - 1) {
        job->cursor = owner.id;  // ours to keep (or the owner's set is short): next owner
        return gc_step(job);
    }
    auto any = store_->scan(job->cursor, owner.id, 1, std::nullopt);
    if (!any || any->entries.empty()) {
        job->cursor = owner.id;
        return gc_step(job);
    }
    job->sub_to = owner.id;
    job->targets = std::move(holders);
    job->targets.insert(job->targets.begin(), owner.address);
    job->snapshot = store_->snapshot();
    job->resume.reset();
    gc_push(job);
}

void Node::on_replica_set(const ConnectionPtr& from, const net::ReplicaSetRequest& request) {
    net::ReplicaSetReply out;
    out.request_id = request.request_id;
    for (const auto& vnode : vnodes_) {
        if (vnode->self().id != request.vnode) continue;
        if (vnode->ring_state().state != chord::MemberState::member) break;
        out.owner = true;
        out.holders = replica_addresses(*vnode, options_.replicas - 1);
        break;
    }
    reply(from, out);
}

void Node::gc_push(const std::shared_ptr<GcJob>& job) {
    auto batch = store_->scan(job->cursor, job->sub_to, options_.repair_batch_keys_max, job->resume,
                              job->snapshot.get(), detail::kSyncBatchBytesMax);
    if (!batch) return gc_done();
    if (batch->entries.empty()) {
        job->snapshot.reset();
        job->cursor = job->sub_to;
        return gc_step(job);
    }
    std::vector<net::SyncEntry> wire;
    wire.reserve(batch->entries.size());
    for (const auto& e : batch->entries) wire.push_back(detail::to_sync(e));
    auto shared_wire = std::make_shared<const std::vector<net::SyncEntry>>(std::move(wire));
    auto entries = std::make_shared<std::vector<storage::Entry>>(std::move(batch->entries));
    job->resume = batch->resume_after;
    struct Acks {
        std::size_t pending = 0;
        bool failed = false;
    };
    auto acks = std::make_shared<Acks>();
    acks->pending = job->targets.size();
    std::weak_ptr<int> alive = alive_;
    for (const auto& target : job->targets) {
        peers_->call(
            target,
            [shared_wire, k = cluster_key()](std::uint64_t rid) {
                return net::encode_admin(
                    net::ReplicateBatchRequest{rid, *shared_wire,
                                               static_cast<std::uint8_t>(net::SyncPurpose::repair)},
                    k);
            },
            [this, alive, job, acks, entries](Result<net::Frame> answer) {
                if (alive.expired() || stopped_) return;
                if (!answer || answer->type != net::admin_type<net::ReplicateBatchReply>()) {
                    acks->failed = true;
                }
                if (--acks->pending > 0) return;
                if (acks->failed) return gc_done();  // keep our copies; try again next round
                // Every new holder has these entries: drop ours unless written since.
                if (auto erased = store_->erase_unchanged(*entries)) {
                    copies_dropped_ += *erased;
                    counters_[job->vnode].repair_sent += entries->size();
                }
                if (job->resume) return gc_push(job);
                job->snapshot.reset();
                job->cursor = job->sub_to;
                gc_step(job);
            },
            options_.replica_timeout);
    }
}

}  // namespace chordkv
