// Dropping copies this process no longer has to hold (DESIGN.md "Handoff": a node that drops
// out of a key's replica set deletes its copy only after the new holder has it).
//
// After a repair round of vnode v, its replica span (previous own vnode, predecessor(v)] —
// keys held here for owners in between — is walked owner by owner with lookups:
//
//   lookup(cursor+1) ─► owner o ─► ReplicaSetRequest to o: the holders its writes go to
//     this process among them, or fewer than R-1  ─► keep (cursor = o)
//     otherwise ─► snapshot; digest (cursor, o] in buckets, here and at o and each holder
//       some target has fewer entries than we do in some bucket, and this span was deferred
//       fewer than kGcDeferralsMax times in a row ─► keep for now (cursor = o); walk the
//       span again in kGcRetry
//       else, for each bucket, batch by batch from the snapshot:
//         push to the targets whose digest of the bucket differs from ours
//         once they all acknowledged (at once when none differs), erase the entries that
//         still have the snapshot's version
//
// A target whose digest of a bucket equals ours holds every entry of it at our version. A
// target with fewer entries is nearly always a new holder that the owner's own repair
// (urgent since its holders changed) is filling at this moment, so we wait for that instead
// of sending the same copies a second time; only when it stays behind do we push ourselves.
// (Waiting on any difference kept copies ~50 s in a join under writes: writes since we left
// the set change the holders' digests but never ours.)
// (Before, every dropped copy went to all R targets at once: in a join of a fourth process
// into a 1M-key ring, 1.5-2 M entries sent and applied - read, compared, mostly skipped - for
// 0.7 M dropped copies.) A wrong view only costs work: copies are erased after all R holders
// have them, and an owner's own repair rounds restore any copy its replica set should have.
#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include "net/admin_codec.hpp"
#include "node/node.hpp"
#include "node/sync_entry.hpp"

namespace chordkv {

struct Node::GcJob {
    std::size_t vnode = 0;
    chord::NodeId cursor;  // keys in (cursor, end] remain to be looked at
    chord::NodeId end;
    int lookups = 0;
    bool deferred = false;  // an owner was skipped because a target lacked copies
    // The sub-arc (cursor, sub_to] being moved away, and where to.
    chord::NodeId sub_to;
    std::vector<std::string> targets;
    // Shared with the store reader thread while it digests the sub-arc.
    std::shared_ptr<const storage::Snapshot> snapshot;
    storage::ArcDigest ours;               // of the sub-arc, in the snapshot
    std::vector<std::vector<bool>> lacks;  // [target][bucket]: its digest differs
    bool behind = false;                // some target has fewer entries than we do in some bucket
    std::size_t bucket = 0;             // the bucket being dropped
    std::optional<std::string> resume;  // within it
};

namespace {
// Lookups per span walk: a span holds about one owner per other process; more means the
// view is moving, and the next round continues.
constexpr int kGcLookupsMax = 64;
// Waiting for an owner to fill a new holder: walks deferred in a row before pushing
// ourselves, and when the next walk comes (the vnode's next repair round, brought forward).
constexpr int kGcDeferralsMax = 5;
constexpr std::chrono::seconds kGcRetry{2};
// A walk that stopped early is resumed after kGcRetry, doubled per stop in a row up to
// 2^(kGcStopsBackoffMax-1) times (64 s). Before, the next walk came with the vnode's full
// check (repair_full_interval, 60 s later), and a span longer than kGcLookupsMax owners was
// never walked to its end.
constexpr int kGcStopsBackoffMax = 6;
// Between two erased batches (at most repair_batch_keys_max keys each): dropping is cleanup,
// and yields to everything else (at 512 keys per 5 ms, about 100,000 copies per second).
constexpr std::chrono::milliseconds kGcErasePause{5};
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
    if (!any || any->entries.empty()) {
        repair_memo_[index].gc_deferrals = 0;
        return gc_done();
    }
    auto job = std::make_shared<GcJob>();
    job->vnode = index;
    job->cursor = from;
    job->end = pred;
    if (auto& resume = repair_memo_[index].gc_resume) {
        if (chord::in_open(*resume, from, pred)) job->cursor = *resume;
        resume.reset();
    }
    gc_job_ = job;
    gc_step(job);
}

void Node::gc_release() {
    if (auto job = gc_job_.lock()) job->snapshot.reset();
}

void Node::gc_done() {
    repairing_ = false;
    arm_repair();
}

void Node::gc_stopped(const std::shared_ptr<GcJob>& job) {
    RepairMemo& memo = repair_memo_[job->vnode];
    memo.gc_resume = job->cursor;
    memo.gc_stops = std::min(memo.gc_stops + 1, kGcStopsBackoffMax);
    memo.check_by = std::min(memo.check_by, now() + kGcRetry * (1 << (memo.gc_stops - 1)));
    gc_done();
}

void Node::gc_step(const std::shared_ptr<GcJob>& job) {
    if (stopped_) return;
    if (job->cursor == job->end) {
        RepairMemo& memo = repair_memo_[job->vnode];
        if (job->deferred) {
            ++memo.gc_deferrals;
            memo.check_by = std::min(memo.check_by, now() + kGcRetry);
        } else {
            memo.gc_deferrals = 0;
        }
        memo.gc_stops = 0;
        return gc_done();
    }
    if (leaving_) return gc_done();
    if (job->lookups >= kGcLookupsMax) return gc_stopped(job);
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
    if (!found) return gc_stopped(job);
    const chord::Peer owner = found->owner;
    if (!chord::in_open_closed(owner.id, job->cursor, job->end)) return gc_stopped(job);
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
                return gc_stopped(job);
            }
            auto reply = net::decode_admin<net::ReplicaSetReply>(answer->payload);
            if (!reply || !reply->owner) return gc_stopped(job);
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
    job->bucket = 0;
    job->resume.reset();
    // Our digest reads the whole sub-arc (0.8 us a key: 20 ms for 25,000 keys), so it runs
    // on the store reader thread, not in the io thread's way.
    std::weak_ptr<int> alive = alive_;
    digest_async(
        job->cursor, job->sub_to, static_cast<std::uint32_t>(options_.repair_buckets),
        [this, alive, job](Result<storage::ArcDigest> digest) {
            if (alive.expired() || stopped_) return;
            if (!digest || !job->snapshot) return gc_stopped(job);
            job->ours = std::move(*digest);
            gc_compare(job);
        },
        job->snapshot);
}

void Node::gc_compare(const std::shared_ptr<GcJob>& job) {
    if (leaving_) return gc_done();
    const std::size_t buckets = job->ours.buckets.size();
    job->lacks.assign(job->targets.size(), std::vector<bool>(buckets, false));
    job->behind = false;
    // Ask every target for its digest of the sub-arc; the drop starts once all have answered.
    auto pending = std::make_shared<std::size_t>(job->targets.size());
    auto failed = std::make_shared<bool>(false);
    std::weak_ptr<int> alive = alive_;
    for (std::size_t t = 0; t < job->targets.size(); ++t) {
        peers_->call(
            job->targets[t],
            [from = job->cursor, to = job->sub_to, n = static_cast<std::uint32_t>(buckets),
             k = cluster_key()](std::uint64_t rid) {
                return net::encode_admin(net::SyncDigestRequest{rid, from, to, n}, k);
            },
            [this, alive, job, t, pending, failed](Result<net::Frame> answer) {
                if (alive.expired() || stopped_) return;
                std::optional<std::vector<std::size_t>> differ;
                std::vector<std::uint64_t> counts;
                if (answer && answer->type == net::admin_type<net::SyncDigestReply>()) {
                    if (auto theirs = net::decode_admin<net::SyncDigestReply>(answer->payload)) {
                        differ =
                            detail::differing_buckets(job->ours, theirs->hashes, theirs->counts);
                        counts = detail::unpack_digest_counts(theirs->counts);
                    }
                }
                if (!differ) {
                    *failed = true;
                } else {
                    for (std::size_t b : *differ) {
                        job->lacks[t][b] = true;
                        if (counts[b] < job->ours.counts[b]) job->behind = true;
                    }
                }
                if (--*pending > 0) return;
                if (*failed) return gc_stopped(job);  // keep our copies; try again soon
                // A target with fewer entries than ours in a bucket is being filled (by the
                // owner, nearly always): wait for that. One with as many or more differs by
                // versions (writes since we left the set reach only the holders): we push
                // those buckets at once, last writer wins on their side.
                if (job->behind && repair_memo_[job->vnode].gc_deferrals < kGcDeferralsMax) {
                    job->deferred = true;
                    job->snapshot.reset();
                    job->cursor = job->sub_to;
                    return gc_step(job);
                }
                gc_push(job);
            },
            options_.replica_timeout);
    }
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
    if (stopped_) return;
    if (leaving_) return gc_done();
    const std::size_t buckets = job->ours.buckets.size();
    std::optional<storage::ScanBatch> batch;
    std::optional<std::pair<chord::NodeId, chord::NodeId>> sub;
    for (; job->bucket < buckets; ++job->bucket, job->resume.reset()) {
        if (job->ours.counts[job->bucket] == 0) continue;
        sub = storage::digest_bucket_arc(job->cursor, job->sub_to, buckets, job->bucket);
        if (!sub) continue;
        auto scanned = store_->scan(sub->first, sub->second, options_.repair_batch_keys_max,
                                    job->resume, job->snapshot.get(), detail::kSyncBatchBytesMax);
        if (!scanned) return gc_stopped(job);
        if (!scanned->entries.empty()) {
            batch = std::move(*scanned);
            break;
        }
    }
    if (!batch) {  // the sub-arc is done
        job->snapshot.reset();
        job->cursor = job->sub_to;
        return gc_step(job);
    }
    job->resume = batch->resume_after;
    const std::size_t bucket = job->bucket;
    if (!job->resume) {
        ++job->bucket;
    }
    // What we erase once the targets have it: keys and versions only.
    auto held = std::make_shared<std::vector<storage::Entry>>();
    held->reserve(batch->entries.size());
    for (const auto& e : batch->entries) {
        held->push_back(storage::Entry{e.key_id, e.key,
                                       storage::Record{e.record.version, e.record.tombstone, {}}});
    }
    std::weak_ptr<int> alive = alive_;
    auto erase_and_go_on = [this, alive, job, held] {
        if (alive.expired() || stopped_) return;
        if (auto erased = store_->erase_unchanged(*held)) copies_dropped_ += *erased;
        gc_push(job);
    };
    std::vector<std::string> lacking;
    for (std::size_t t = 0; t < job->targets.size(); ++t) {
        if (job->lacks[t][bucket]) lacking.push_back(job->targets[t]);
    }
    if (lacking.empty()) {
        // Every target has this batch: erase it, then go on after a pause, so that dropping
        // a large span (a quarter of a 1M-key store after a join) neither holds the io thread
        // nor takes a core from the transfers that are still running.
        gc_timer_.expires_after(kGcErasePause);
        gc_timer_.async_wait([erase_and_go_on](const boost::system::error_code& ec) {
            if (!ec) erase_and_go_on();
        });
        return;
    }
    counters_[job->vnode].repair_sent += batch->entries.size();
    auto request =
        detail::shared_batch(detail::to_sync(std::move(batch->entries)), net::SyncPurpose::repair);
    auto pending = std::make_shared<std::size_t>(lacking.size());
    auto failed = std::make_shared<bool>(false);
    for (const auto& target : lacking) {
        peers_->call(
            target,
            [request, k = cluster_key()](std::uint64_t rid) {
                request->request_id = rid;
                return net::encode_admin(*request, k);
            },
            [this, alive, job, pending, failed, erase_and_go_on](Result<net::Frame> answer) {
                if (alive.expired() || stopped_) return;
                if (!answer || answer->type != net::admin_type<net::ReplicateBatchReply>()) {
                    *failed = true;
                }
                if (--*pending > 0) return;
                if (*failed) return gc_stopped(job);  // keep our copies; try again soon
                erase_and_go_on();
            },
            options_.replica_timeout);
    }
}

}  // namespace chordkv
