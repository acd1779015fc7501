// Replica maintenance (DESIGN.md "Handoff"): every repair_interval, one vnode of this process
// (round robin) compares its arc (predecessor, self] with each of its replica holders by
// bucketed digests, and for each bucket that differs pulls the holder's entries and pushes
// its own, in batches, applied last-writer-wins on both sides.
//
//   SyncDigest(arc) ─► differing buckets ─► for each: SyncScan pull ─► apply_batch locally
//                                                      local scan ─► ReplicateBatch push
//
// The same loop is the handoff of a join (the new owner's replica set holds the old owner,
// so the arc is pulled from it) and brings every key back to R copies after a failure (the
// owner pushes to the new replica holder). One job at a time per process; batches bounded.
#include "net/admin_codec.hpp"
#include "node/node.hpp"
#include "node/sync_entry.hpp"

namespace chordkv {

namespace {

using detail::kSyncBatchBytesMax;
using detail::pack_digest_counts;
using detail::pack_digest_hashes;
using detail::to_entry;
using detail::to_sync;

// Differing buckets synced at once with one holder: each is a chain of requests (pull
// batches, then push batches), so several keep both processes busy while a reply travels.
// With one at a time a join's new owner spent most of its handoff waiting.
constexpr std::size_t kBucketsInFlight = 4;
// When a settled vnode whose span walk was put off by urgent work comes round again.
constexpr std::chrono::seconds kGcAfterUrgent{2};
// After the last change seen near our vnodes, when the sweep of every span starts (the
// owners fill their new holders first).
constexpr std::chrono::seconds kGcSweepDelay{2};

}  // namespace

struct Node::RepairJob {
    chord::NodeId from;  // the arc (from, to]
    chord::NodeId to;
    std::vector<std::string> holders;
    std::size_t holder = 0;            // index into holders
    std::vector<std::size_t> buckets;  // differing buckets with the current holder
    std::vector<bool> empty_here;      // per differing bucket: we held no entry of it
    std::size_t next_bucket = 0;       // index into buckets: the next one to start
    std::size_t active = 0;            // buckets being synced with the current holder
    bool holder_failed = false;        // the current holder failed: finish the active ones
    bool filling = false;              // inside repair_fill (it is not re-entered)
    std::size_t vnode = 0;             // the vnode whose arc this is
    std::uint64_t epoch = 0;           // arc_epoch_ of the vnode when the job started
    // Handoff: the arc changed (a join or failure next to it, or this process (re)joined);
    // else routine maintenance. Only counted apart.
    bool handoff = false;
    bool complete = true;                    // every holder compared and synced
    std::optional<storage::ArcDigest> ours;  // of the arc here; reset when we apply entries
    std::uint8_t purpose() const {
        return static_cast<std::uint8_t>(handoff ? net::SyncPurpose::handoff
                                                 : net::SyncPurpose::repair);
    }
};

// One differing bucket being synced: its index in RepairJob::buckets and its sub-arc.
struct Node::RepairBucket {
    std::size_t index = 0;
    chord::NodeId from;  // the sub-arc (from, to]
    chord::NodeId to;
};

void Node::arm_repair() {
    if (stopped_ || leaving_) return;
    // Urgent work runs back to back; the round robin waits for the interval.
    repair_timer_.expires_after(repair_urgent_.empty() ? options_.repair_interval
                                                       : std::chrono::milliseconds(0));
    std::weak_ptr<int> alive = alive_;
    repair_timer_.async_wait([this, alive](const boost::system::error_code& ec) {
        if (ec || alive.expired() || stopped_) return;
        repair_round();
    });
}

void Node::note_predecessors() {
    // An arc that changed is urgent, and unsettled until a round with every holder has
    // finished. It changed when its predecessor did (a join or a failure next to us), and
    // also when its replica holders did: a process cut off (or partitioned with a few others)
    // for longer than failure detection keeps the predecessor of a vnode whose predecessor is
    // its own, while the other side takes the arc and its writes; its only sign is that the
    // holders it knew are gone. (Reads at such a vnode were stale for ~1 s after the link
    // came back, until the merge: chaos seed 7 with 11-17 s cuts.)
    if (repair_seen_predecessor_.size() != vnodes_.size()) return;  // still opening
    if (repair_seen_holders_.size() != vnodes_.size()) repair_seen_holders_.resize(vnodes_.size());
    // The holders as the successor list alone names them (replica_addresses' cheap part; its
    // fallback walks every vnode's fingers), at most every 50 ms: pump() runs per message.
    const chord::Time t = now();
    const bool check_holders =
        options_.replicas > 1 && t - holders_checked_at_ >= std::chrono::milliseconds(50);
    if (check_holders) holders_checked_at_ = t;
    for (std::size_t i = 0; i < vnodes_.size(); ++i) {
        const auto& ring = vnodes_[i]->ring_state();
        const auto& pred = ring.predecessor;
        const std::optional<chord::NodeId> id =
            pred ? std::optional<chord::NodeId>(pred->id) : std::nullopt;
        bool holders_changed = false;
        if (check_holders) {
            std::vector<std::string> holders;
            for (const auto& p : ring.successors) {
                if (holders.size() == options_.replicas - 1) break;
                if (p.address == advertise_text_) continue;
                if (std::find(holders.begin(), holders.end(), p.address) != holders.end()) continue;
                holders.push_back(p.address);
            }
            if (holders != repair_seen_holders_[i]) {
                holders_changed = true;
                repair_seen_holders_[i] = std::move(holders);
            }
        }
        if (id != repair_seen_predecessor_[i] || holders_changed) {
            // The ring changed near us: a join or leave also moves replica sets that none of
            // our arcs shows (a vnode landing between an owner and our predecessor), so walk
            // every span for copies to drop once things have calmed down.
            gc_sweep_left_ = vnodes_.size();
            gc_sweep_at_ = t + kGcSweepDelay;
            repair_seen_predecessor_[i] = id;
            arc_synced_[i] = false;
            ++arc_epoch_[i];
            if (std::find(repair_urgent_.begin(), repair_urgent_.end(), i) ==
                repair_urgent_.end()) {
                repair_urgent_.push_back(i);
            }
        }
    }
}

void Node::repair_round() {
    if (leaving_) return;
    if (repairing_ || vnodes_.empty()) {
        arm_repair();
        return;
    }
    note_predecessors();
    // The next vnode with work: urgent ones first; in the round robin, an arc that is synced,
    // whose writes since reached all their holders, with the same holders and checked within
    // repair_full_interval is skipped (an idle ring, or one whose replicas keep up, then costs
    // no digests; a holder that lost data is still found within the full interval).
    std::size_t index = 0;
    std::vector<std::string> holders;
    bool found = false;
    if (!repair_urgent_.empty()) {
        index = repair_urgent_.front();
        repair_urgent_.pop_front();
        holders = replica_addresses(*vnodes_[index], options_.replicas - 1);
        found = true;
    }
    const chord::Time t = now();
    if (!found && gc_sweep_left_ > 0 && t >= gc_sweep_at_) {
        // A sweep after a ring change: this turn walks one vnode's span (gc_done ends it).
        --gc_sweep_left_;
        repairing_ = true;
        gc_start(gc_sweep_next_++ % vnodes_.size());
        return;
    }
    for (std::size_t tried = 0; !found && tried < vnodes_.size(); ++tried) {
        index = repair_next_vnode_++ % vnodes_.size();
        holders = replica_addresses(*vnodes_[index], options_.replicas - 1);
        const RepairMemo& memo = repair_memo_[index];
        found = memo.dirty || !arc_settled(index) || holders != memo.holders || t >= memo.check_by;
    }
    if (!found) {
        arm_repair();
        return;
    }
    chord::Protocol& vnode = *vnodes_[index];
    const auto& ring = vnode.ring_state();
    if (ring.state != chord::MemberState::member || !ring.predecessor) {
        arm_repair();
        return;
    }
    auto job = std::make_shared<RepairJob>();
    job->from = ring.predecessor->id;
    job->to = ring.self.id;
    job->vnode = index;
    job->epoch = arc_epoch_[index];
    job->handoff = !arc_synced_[index];
    job->holders = std::move(holders);
    // A write missing a copy from now on makes the arc dirty again; this job covers the ones
    // before.
    repair_memo_[index].dirty = false;
    if (job->holders.empty()) {
        // No other process holds copies: nothing to sync with. With R = 1 the arc is settled;
        // with R > 1 this process is alone on the ring, or cut off from the others, whose
        // side took the arc's writes meanwhile. So the arc stays unsettled: its plain reads
        // ask the replicas as soon as there are any again (until then they are answered
        // here), and the first complete round with the holders settles it. (Settling it here
        // served stale reads for ~1 s after a long cut was restored: chaos seed 7.)
        if (options_.replicas <= 1) arc_synced_[index] = true;
        arm_repair();
        return;
    }
    repairing_ = true;
    ++repair_rounds_;
    repair_with(job);
}

void Node::repair_done(const std::shared_ptr<RepairJob>& job) {
    const auto& pred = vnodes_[job->vnode]->ring_state().predecessor;
    note_predecessors();
    if (job->complete && pred && pred->id == job->from && arc_epoch_[job->vnode] == job->epoch) {
        arc_synced_[job->vnode] = true;
        RepairMemo& memo = repair_memo_[job->vnode];
        memo.holders = job->holders;
        if (repair_urgent_.empty()) {
            memo.check_by = now() + options_.repair_full_interval;
            gc_start(job->vnode);  // ends the round (gc_done)
            return;
        }
        // Arcs that changed come first; dropping copies can wait for this vnode's next turn
        // (a join's old processes walked their spans, one job at a time, while the joiner
        // waited for their pushes).
        memo.check_by = now() + kGcAfterUrgent;
    }
    repairing_ = false;
    arm_repair();
}

void Node::repair_holder_failed(const std::shared_ptr<RepairJob>& job) {
    job->complete = false;
    repair_memo_[job->vnode].dirty = true;  // look again at the next turn
    ++job->holder;
    repair_with(job);
}

void Node::repair_with(const std::shared_ptr<RepairJob>& job) {
    if (stopped_) return;
    if (job->holder >= job->holders.size()) {
        repair_done(job);
        return;
    }
    const std::string& address = job->holders[job->holder];
    const auto buckets = static_cast<std::uint32_t>(options_.repair_buckets);
    std::weak_ptr<int> alive = alive_;
    peers_->call(
        address,
        [job, buckets, k = cluster_key()](std::uint64_t rid) {
            return net::encode_admin(net::SyncDigestRequest{rid, job->from, job->to, buckets}, k);
        },
        [this, alive, job, buckets](Result<net::Frame> answer) {
            if (alive.expired() || stopped_) return;
            if (!answer || answer->type != net::admin_type<net::SyncDigestReply>()) {
                return repair_holder_failed(job);
            }
            auto theirs = net::decode_admin<net::SyncDigestReply>(answer->payload);
            if (!theirs) return repair_holder_failed(job);
            // Our digest is computed once per job, and again only after we applied pulled
            // entries (writes meanwhile are compared at the arc's next round: they make it
            // dirty). On a busy old process in a join, digests were half of the CPU. It is
            // computed off the io thread (digest_async).
            if (job->ours) return repair_compare(job, *theirs);
            auto reply = std::make_shared<net::SyncDigestReply>(std::move(*theirs));
            digest_async(job->from, job->to, buckets,
                         [this, job, reply](Result<storage::ArcDigest> ours) {
                             if (stopped_) return;
                             if (!ours) return repair_holder_failed(job);
                             job->ours = std::move(*ours);
                             repair_compare(job, *reply);
                         });
        },
        options_.replica_timeout);
}

void Node::repair_compare(const std::shared_ptr<RepairJob>& job,
                          const net::SyncDigestReply& theirs) {
    auto differ = detail::differing_buckets(*job->ours, theirs.hashes, theirs.counts);
    if (!differ) return repair_holder_failed(job);
    job->buckets = std::move(*differ);
    job->empty_here.clear();
    for (std::size_t b : job->buckets) job->empty_here.push_back(job->ours->counts[b] == 0);
    job->next_bucket = 0;
    job->active = 0;
    job->holder_failed = false;
    repair_fill(job);
}

void Node::repair_fill(const std::shared_ptr<RepairJob>& job) {
    if (stopped_ || job->filling) return;  // the outer call sees what changed
    job->filling = true;
    while (!job->holder_failed && job->active < kBucketsInFlight &&
           job->next_bucket < job->buckets.size()) {
        const std::size_t index = job->next_bucket++;
        auto sub = storage::digest_bucket_arc(job->from, job->to, options_.repair_buckets,
                                              job->buckets[index]);
        if (!sub) continue;
        ++job->active;
        repair_pull(job,
                    std::make_shared<RepairBucket>(RepairBucket{index, sub->first, sub->second}),
                    std::nullopt);
    }
    job->filling = false;
    if (job->active > 0) return;
    if (job->holder_failed) return repair_holder_failed(job);
    ++job->holder;
    repair_with(job);
}

void Node::repair_bucket_done(const std::shared_ptr<RepairJob>& job, bool failed) {
    if (failed) job->holder_failed = true;  // this holder is gone or confused: next one
    --job->active;
    repair_fill(job);
}

void Node::repair_pull(const std::shared_ptr<RepairJob>& job,
                       const std::shared_ptr<RepairBucket>& bucket,
                       std::optional<std::string> after) {
    const std::string& address = job->holders[job->holder];
    const auto batch = static_cast<std::uint32_t>(options_.repair_batch_keys_max);
    std::weak_ptr<int> alive = alive_;
    peers_->call(
        address,
        [from = bucket->from, to = bucket->to, after = std::move(after), batch,
         purpose = job->purpose(), k = cluster_key()](std::uint64_t rid) {
            return net::encode_admin(net::SyncScanRequest{rid, from, to, after, batch, purpose}, k);
        },
        [this, alive, job, bucket](Result<net::Frame> answer) {
            if (alive.expired() || stopped_) return;
            if (job->holder_failed || !answer ||
                answer->type != net::admin_type<net::SyncScanReply>()) {
                return repair_bucket_done(job, true);
            }
            auto reply = net::decode_admin<net::SyncScanReply>(answer->payload);
            if (!reply) return repair_bucket_done(job, true);
            // Ask for the next batch before applying this one: the holder scans it meanwhile.
            if (reply->resume_after) repair_pull(job, bucket, reply->resume_after);
            std::vector<storage::Entry> entries;
            entries.reserve(reply->entries.size());
            std::uint64_t newest = 0;
            for (auto& e : reply->entries) {
                newest = std::max(newest, e.record.version);
                entries.push_back(to_entry(std::move(e)));
            }
            if (!entries.empty()) {
                (void)hlc_.observe(newest, physical_ms());
                if (auto applied = store_->apply_batch(entries)) {
                    if (*applied > 0) job->ours.reset();  // our side of the arc changed
                    repair_keys_pulled_ += *applied;
                    auto& c = counters_[job->vnode];
                    (job->handoff ? c.handoff_received : c.repair_received) += *applied;
                }
            }
            if (reply->resume_after) return;  // the next batch's reply goes on
            if (job->empty_here[bucket->index]) {
                // We had nothing of this bucket: all we hold now is what we just pulled from
                // this holder, so pushing it back would only cost both sides (a join's new
                // owner pulls its whole arc this way).
                return repair_bucket_done(job, false);
            }
            repair_push(job, bucket, std::nullopt);
        },
        options_.replica_timeout);
}

void Node::repair_push(const std::shared_ptr<RepairJob>& job,
                       const std::shared_ptr<RepairBucket>& bucket,
                       std::optional<std::string> after) {
    auto batch = store_->scan(bucket->from, bucket->to, options_.repair_batch_keys_max, after,
                              nullptr, kSyncBatchBytesMax);
    if (!batch || batch->entries.empty() || job->holder_failed) {
        return repair_bucket_done(job, false);
    }
    const auto resume = batch->resume_after;
    auto request = detail::shared_batch(to_sync(std::move(batch->entries)),
                                        static_cast<net::SyncPurpose>(job->purpose()));
    std::weak_ptr<int> alive = alive_;
    peers_->call(
        job->holders[job->holder],
        [request, k = cluster_key()](std::uint64_t rid) {
            request->request_id = rid;
            return net::encode_admin(*request, k);
        },
        [this, alive, job, bucket, resume](Result<net::Frame> answer) {
            if (alive.expired() || stopped_) return;
            if (!answer || answer->type != net::admin_type<net::ReplicateBatchReply>()) {
                return repair_bucket_done(job, true);
            }
            if (auto reply = net::decode_admin<net::ReplicateBatchReply>(answer->payload)) {
                repair_keys_pushed_ += reply->applied;
                auto& c = counters_[job->vnode];
                (job->handoff ? c.handoff_sent : c.repair_sent) += reply->applied;
            }
            if (resume) return repair_push(job, bucket, resume);
            repair_bucket_done(job, false);
        },
        options_.replica_timeout);
}

// --- the holder's side ------------------------------------------------------------------

void Node::on_sync_digest(const ConnectionPtr& from, const net::SyncDigestRequest& request) {
    const std::uint64_t id = request.request_id;
    // A bad bucket count is refused at once, not queued behind the digests (and never busy).
    if (request.buckets == 0 || request.buckets > storage::kDigestBucketsMax) {
        reply_error(
            from, id,
            Error(Errc::invalid_argument, "digest of " + std::to_string(request.buckets) +
                                              " buckets, outside [1, " +
                                              std::to_string(storage::kDigestBucketsMax) + "]"));
        return;
    }
    digest_async(request.from_exclusive, request.to_inclusive, request.buckets,
                 [this, from, id](Result<storage::ArcDigest> digest) {
                     if (stopped_) return;
                     if (!digest) {
                         reply_error(from, id, digest.error());
                         return;
                     }
                     reply(from, net::SyncDigestReply{id, pack_digest_hashes(*digest),
                                                      pack_digest_counts(*digest)});
                 });
}

void Node::on_sync_scan(const ConnectionPtr& from, const net::SyncScanRequest& request) {
    const std::size_t batch =
        std::clamp<std::size_t>(request.batch_keys_max, 1, options_.repair_batch_keys_max * 4);
    auto scanned = store_->scan(request.from_exclusive, request.to_inclusive, batch,
                                request.resume_after, nullptr, kSyncBatchBytesMax);
    if (!scanned) {
        reply_error(from, request.request_id, scanned.error());
        return;
    }
    net::SyncScanReply reply_message;
    reply_message.request_id = request.request_id;
    const std::size_t count = scanned->entries.size();
    reply_message.entries = to_sync(std::move(scanned->entries));
    reply_message.resume_after = scanned->resume_after;
    if (count > 0) {
        auto& c = counters_[span_vnode(request.to_inclusive)];
        switch (static_cast<net::SyncPurpose>(request.purpose)) {
            case net::SyncPurpose::handoff:
                c.handoff_sent += count;
                break;
            case net::SyncPurpose::repair:
                c.repair_sent += count;
                break;
            default:
                break;  // a dump is not a transfer
        }
    }
    reply(from, reply_message);
}

void Node::on_replicate_batch(const ConnectionPtr& from, net::ReplicateBatchRequest request) {
    std::vector<storage::Entry> entries;
    entries.reserve(request.entries.size());
    std::uint64_t newest = 0;
    for (auto& e : request.entries) {
        if (auto ok = check_key(e.key); !ok) {
            reply_error(from, request.request_id, ok.error());
            return;
        }
        newest = std::max(newest, e.record.version);
        entries.push_back(to_entry(std::move(e)));
    }
    (void)hlc_.observe(newest, physical_ms());
    auto applied = store_->apply_batch(entries);
    if (!applied) {
        reply_error(from, request.request_id, applied.error());
        return;
    }
    if (!entries.empty() && *applied > 0) {
        auto& c = counters_[span_vnode(entries.front().key_id)];
        (request.purpose == static_cast<std::uint8_t>(net::SyncPurpose::repair)
             ? c.repair_received
             : c.handoff_received) += *applied;
    }
    reply(from, net::ReplicateBatchReply{request.request_id, *applied});
}

}  // namespace chordkv
