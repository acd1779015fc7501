#include "chord/rpc_tracker.hpp"

#include <cassert>

namespace chordkv::chord {

RpcTracker::Duration RpcTracker::backoff(const Policy& policy, int attempt) {
    // timeout × 2^(attempt-1), stretched or shrunk by up to ±jitter.
    const auto base = policy.timeout * (1 << std::min(attempt - 1, 10));
    if (jitter_ <= 0.0) return base;
    std::uniform_real_distribution<double> spread(1.0 - jitter_, 1.0 + jitter_);
    return std::chrono::duration_cast<Duration>(base * spread(rng_));
}

Result<Envelope> RpcTracker::start(Time now, Envelope request, const Policy& policy,
                                   Callback done) {
    assert(policy.attempts_max >= 1);
    if (pending_.size() >= inflight_max_) {
        return Result<Envelope>(Errc::busy, std::to_string(inflight_max_) + " RPCs in flight");
    }
    const RpcId id = next_id_++;
    request.rpc_id = id;
    request.reply = false;
    Pending p{request, policy, 1, now + backoff(policy, 1), std::move(done)};
    deadlines_.emplace(p.deadline, id);
    pending_.emplace(id, std::move(p));
    return request;
}

bool RpcTracker::complete(Time now, const Envelope& reply) {
    auto it = pending_.find(reply.rpc_id);
    if (it == pending_.end()) return false;
    const Envelope& request = it->second.request;
    // Only the vnode that was asked may answer (a bootstrap request names no vnode id).
    if (reply.from.address != request.to_address ||
        (request.to_id && reply.from.id != *request.to_id)) {
        return false;
    }
    Callback done = std::move(it->second.done);
    deadlines_.erase({it->second.deadline, it->first});
    pending_.erase(it);
    if (done) done(now, reply);
    return true;
}

void RpcTracker::expire(Time now, std::vector<Envelope>& resend) {
    std::vector<Callback> failed;
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        const RpcId id = deadlines_.begin()->second;
        deadlines_.erase(deadlines_.begin());
        auto it = pending_.find(id);
        assert(it != pending_.end());
        Pending& p = it->second;
        if (p.attempt < p.policy.attempts_max) {
            ++p.attempt;
            ++retries_;
            p.deadline = now + backoff(p.policy, p.attempt);
            deadlines_.emplace(p.deadline, id);
            resend.push_back(p.request);
        } else {
            ++timeouts_;
            failed.push_back(std::move(p.done));
            pending_.erase(it);
        }
    }
    for (auto& done : failed) {
        if (done) done(now, Result<Envelope>(Errc::timed_out));
    }
}

void RpcTracker::cancel_all(Time now, Errc reason) {
    std::vector<Callback> failed;
    for (auto& [id, p] : pending_) failed.push_back(std::move(p.done));
    pending_.clear();
    deadlines_.clear();
    for (auto& done : failed) {
        if (done) done(now, Result<Envelope>(reason));
    }
}

RpcTracker::Time RpcTracker::next_deadline() const {
    return deadlines_.empty() ? Time::max() : deadlines_.begin()->first;
}

}  // namespace chordkv::chord
