// RpcTracker: every outstanding RPC of a vnode as data — id, peer, deadline, attempts, state —
// with exactly-once completion.
//
//   start(now, envelope, policy, cb) ─► pending ──reply──────────► cb(reply)      (once)
//                                        │   ▲
//                                deadline│   │resend (attempt < attempts_max,
//                                        ▼   │ timeout × 2^attempt ± jitter)
//                                     expired ──last attempt────► cb(timed_out)   (once)
//
// expire() collects everything due first, updates the table, and only then fires callbacks,
// so a callback may start new RPCs safely (libtorrent's rpc_manager::tick does the same).
// Sans-I/O: resends are handed back to the caller as envelopes; nothing is sent from here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "chord/messages.hpp"
#include "chord/result.hpp"

namespace chordkv::chord {

class RpcTracker {
public:
    using Time = std::chrono::steady_clock::time_point;
    using Duration = std::chrono::steady_clock::duration;
    // Receives the reply envelope, or the error (timed_out, shutting_down) — exactly once.
    using Callback = std::function<void(Time now, Result<Envelope> reply)>;

    struct Policy {
        Duration timeout = std::chrono::milliseconds(300);  // first attempt's timeout
        int attempts_max = 3;                               // sends in all, >= 1
    };

    // `rng` (for backoff jitter) must outlive the tracker. jitter is relative, in [0, 1).
    RpcTracker(std::size_t inflight_max, double jitter, std::mt19937_64& rng)
        : inflight_max_(inflight_max), jitter_(jitter), rng_(rng) {}

    // Registers `request` (its rpc_id is overwritten with a fresh id) and returns the id.
    // The caller sends the returned envelope. Error: busy when inflight_max RPCs are pending.
    Result<Envelope> start(Time now, Envelope request, const Policy& policy, Callback done);

    // Completes the RPC that `reply` answers. Returns false (and does nothing) for an unknown
    // id: a late reply after a timeout, a duplicate, or a forgery. A reply from a peer other
    // than the one asked is also rejected.
    bool complete(Time now, const Envelope& reply);

    // Handles every deadline at or before `now`: envelopes to resend are appended to `resend`,
    // RPCs out of attempts complete with timed_out.
    void expire(Time now, std::vector<Envelope>& resend);

    // Completes every pending RPC with `reason` (e.g. shutting_down).
    void cancel_all(Time now, Errc reason);

    Time next_deadline() const;
    std::size_t inflight() const noexcept { return pending_.size(); }
    std::uint64_t timeouts() const noexcept { return timeouts_; }
    std::uint64_t retries() const noexcept { return retries_; }

private:
    struct Pending {
        Envelope request;
        Policy policy;
        int attempt = 1;
        Time deadline;
        Callback done;
    };
    Duration backoff(const Policy& policy, int attempt);

    std::size_t inflight_max_;
    double jitter_;
    std::mt19937_64& rng_;
    RpcId next_id_ = 1;
    std::map<RpcId, Pending> pending_;
    std::set<std::pair<Time, RpcId>> deadlines_;
    std::uint64_t timeouts_ = 0;
    std::uint64_t retries_ = 0;
};

}  // namespace chordkv::chord
