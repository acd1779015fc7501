// RingView and RingWalk: a client's picture of the ring — which process serves each vnode —
// so that a request goes straight to its key's owner: one network hop in steady state.
//
// Both are sans-I/O (STYLE.md 1). RingWalk says which process to ask next and takes the
// InfoReply (net/admin.hpp) that came back; RingView answers owner(key id) and learns from the
// answers to requests. The caller does the I/O and passes `now`: chordkv::Client drives them
// with blocking requests, chord-bench with a PeerPool.
//
//   first use, or the view is stale and rewalk_interval_min has passed since the last walk
//        │
//        ▼
//   RingWalk: seeds, one at a time until one answers ─► InfoReply: its member vnodes (what a
//        │    process says of itself wins) and the peers its successor lists and predecessors
//        │    name (hearsay) ─► each process named and not asked yet is asked in turn
//        │    (at most walk_processes_max of them, within walk_timeout)
//        ▼
//   RingView::finish_walk: the walk's vnodes replace the view (unless it learned nothing)
//        │
//   owner(key id) = the process of successor(key id) among the vnodes in the view
//        │ reply              │ Redirect{owner id, address}         │ no answer
//        ▼                    ▼                                     ▼
//      done          learn(owner id, address); the view is     forget every vnode of the
//                    stale when the redirecting process is     address; the view is stale;
//                    the one it named as the owner             the caller falls back to seeds
//
// A stale view keeps serving (most of it is still right) until the next walk replaces it.
//
// Threading: not thread-safe; one thread at a time per object (copies are independent).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "chord/node_id.hpp"
#include "net/admin.hpp"

namespace chordkv {

struct RingViewOptions {
    // Vnodes the view holds: a redirect that would add one more is not learned (the next walk
    // replaces the view anyway). Default 65536.
    std::size_t vnodes_max = 65536;
    // Processes one walk asks (one InfoRequest each); past it the walk keeps what it learned
    // from the others' successor lists. Default 256.
    std::size_t walk_processes_max = 256;
    // Time one walk may take: after it no new process is asked. Default 5 s.
    std::chrono::milliseconds walk_timeout{5000};
    // Least time between the starts of two walks, so that a changing ring (or a dead seed)
    // does not turn every request into a walk. Default 1 s.
    std::chrono::milliseconds rewalk_interval_min{1000};
};

// One discovery of the ring from a list of seeds. Usage:
//
//   RingWalk walk = view.start_walk(seeds, now);
//   while (auto address = walk.next(now)) { ...InfoRequest... walk.on_reply(*address, reply)
//                                            or walk.on_failure(*address); }
//   view.finish_walk(walk);
//
// next() may hand out several addresses before their answers come (an asynchronous caller
// asks them in parallel); every address it hands out must be answered with exactly one
// on_reply or on_failure.
class RingWalk {
public:
    using Clock = std::chrono::steady_clock;

    RingWalk(std::vector<std::string> seeds, std::size_t processes_max, Clock::time_point deadline);

    // The next process to ask, or nullopt when there is none now: every known process has been
    // asked, the bound or the deadline is reached, or a seed is being asked (the next seed is
    // tried only when it fails).
    std::optional<std::string> next(Clock::time_point now);
    // `asked` answered with `reply`.
    void on_reply(const std::string& asked, const net::InfoReply& reply);
    // `asked` did not answer (or answered with an error).
    void on_failure(const std::string& asked);

    // Nothing is outstanding and next() has nothing more to hand out.
    bool done(Clock::time_point now) const;
    // Processes that answered.
    std::size_t answered() const noexcept { return answered_.size(); }
    // Every vnode learned: what each process that answered says of its own member vnodes, and
    // the hearsay about processes that were not asked. Vnodes of a process that failed to
    // answer are left out.
    std::map<chord::NodeId, std::string> vnodes() const;

private:
    void enqueue(const std::string& address);

    std::vector<std::string> seeds_;
    std::size_t next_seed_ = 0;
    bool seed_answered_ = false;
    std::size_t processes_max_;
    Clock::time_point deadline_;

    std::deque<std::string> queue_;  // to ask, in the order they were named
    std::set<std::string> named_;    // queued, asked or answered (by any name)
    std::set<std::string> outstanding_;
    std::set<std::string> failed_;
    std::size_t asked_ = 0;
    std::map<std::string, std::vector<chord::NodeId>> answered_;  // advertised address → vnodes
    std::map<chord::NodeId, std::string> hearsay_;
};

struct RingViewStats {
    std::uint64_t walks = 0;            // walks started
    std::uint64_t walks_empty = 0;      // walks that learned nothing (the view was kept)
    std::uint64_t vnodes_learned = 0;   // vnodes added or moved by redirects
    std::uint64_t stale_redirects = 0;  // redirects from the process the view named as owner
    std::uint64_t unreachable = 0;      // owners forgotten because they did not answer
};

class RingView {
public:
    using Clock = std::chrono::steady_clock;

    explicit RingView(RingViewOptions options = {});

    // The address of the process serving successor(key_id) among the known vnodes; nullptr
    // when the view is empty. Valid until the next call of a non-const method.
    const std::string* owner(const chord::NodeId& key_id) const;

    // `from` answered a request for `key_id` with Redirect{owner_id, owner_address}: learns the
    // owner (unless the view is full), and marks the view stale when `from` is the process it
    // named as the key's owner (the ring changed under it).
    void on_redirect(const std::string& from, const chord::NodeId& key_id,
                     const chord::NodeId& owner_id, const std::string& owner_address);
    // `address` did not answer: its vnodes are forgotten and the view is stale.
    void on_unreachable(const std::string& address);

    // A walk should start: the view is empty or stale, no walk is running, and none started
    // in the last rewalk_interval_min.
    bool walk_due(Clock::time_point now) const;
    // Starts a walk from `seeds` (any process the caller knows will do).
    RingWalk start_walk(std::vector<std::string> seeds, Clock::time_point now);
    // Takes the walk's vnodes as the new view, unless it learned none (then the view stays as
    // it was and stays stale).
    void finish_walk(const RingWalk& walk);

    bool empty() const noexcept { return vnodes_.empty(); }
    bool stale() const noexcept { return stale_; }
    bool walking() const noexcept { return walking_; }
    std::size_t size() const noexcept { return vnodes_.size(); }
    // Distinct processes in the view.
    std::size_t processes() const;
    const std::map<chord::NodeId, std::string>& vnodes() const noexcept { return vnodes_; }
    const RingViewOptions& options() const noexcept { return options_; }
    const RingViewStats& stats() const noexcept { return stats_; }

private:
    RingViewOptions options_;
    std::map<chord::NodeId, std::string> vnodes_;  // vnode id → address of its process
    bool stale_ = false;
    bool walking_ = false;
    std::optional<Clock::time_point> last_walk_;
    RingViewStats stats_;
};

}  // namespace chordkv
