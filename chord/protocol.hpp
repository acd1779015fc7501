// Protocol: one Chord ring member (a vnode), as a pure, deterministic state machine.
//
// The corrected Chord of Zave ("Reasoning about identifier spaces: How to make Chord
// correct", IEEE TSE 2017). No sockets, threads, clocks or global RNG: the owner feeds in
// messages and the current time, and takes out messages to send and the next deadline.
//
//        handle(now, envelope) ─┐          ┌─► take_outbox(): envelopes to send
//        tick(now) ─────────────┼─► state ─┼─► callbacks: lookups, join, leave complete
//        lookup(now, id, cb) ───┘          └─► next_deadline(): call tick() then
//
// Maintenance, each on its own timer:
//   stabilize     ask the first successor for (predecessor, successor list); a successor that
//                 does not answer is dropped and the next asked; a predecessor p of the
//                 successor with p ∈ (self, succ) is adopted only after p itself answers;
//                 successors = take(r, [s] + s.successors); then Notify(s).
//   rectify       on Notify from n': adopt n' as predecessor if there is none, if
//                 n' ∈ (pred, self), or if the current predecessor fails a Ping.
//   fix_fingers   refresh one finger per tick by lookup; fingers whose start falls inside
//                 (self, successor] are set to the successor without a lookup.
//   join          look up successor(self) through a bootstrap address, then fetch that
//                 node's successor list at once (GetNeighbors), predecessor unknown.
//   leave         tell predecessor and successor (Leave), wait for their acks (bounded).
//                 Vnodes of one process leave together; a run of them that are ring
//                 neighbours is skipped as one gap (see leave()). Until its process is gone a
//                 leaving vnode answers every request with its Leave notice, and a vnode that
//                 announced its leave is not adopted again for a while (see drop_leaver()).
//
// Lookups are iterative: the querying vnode asks the closest preceding node it knows for the
// next hop until some node answers that the target lies between it and its successor. Each
// hop has a timeout; a hop that times out is replaced by the next-best candidate; hops are
// bounded. The answer carries the owner's successor list (the replica set) and the hop count.
//
// All RPCs go through one bounded RpcTracker: ids, deadlines, retries with backoff and jitter
// from the injected RNG, exactly-once completion.
//
// Thread-safety: none. One owner calls every method from one thread (or strand). Callbacks run
// inside the call that completes them (handle, tick, or the starting call itself when the
// answer is local) and may call back into the Protocol.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "chord/messages.hpp"
#include "chord/node_id.hpp"
#include "chord/result.hpp"
#include "chord/rpc_tracker.hpp"

namespace chordkv::chord {

using Time = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;

struct ProtocolOptions {
    // Successor list length r. Survives r-1 simultaneous neighbour failures.
    std::size_t successors = 8;
    // How often stabilize runs. Shorter repairs faster and costs one RPC per period.
    Duration stabilize_interval = std::chrono::milliseconds(500);
    // How often fix_fingers refreshes one finger.
    Duration fix_fingers_interval = std::chrono::milliseconds(250);
    // Maintenance RPCs: first timeout and attempts (retries back off x2 with jitter).
    Duration rpc_timeout = std::chrono::milliseconds(300);
    int rpc_attempts = 3;
    // Attempts of stabilize's GetNeighbors before the successor counts as failed. With 2, a
    // ring on a 5%-loss network drops live successors about once a second (each drop makes
    // lookups briefly skip a vnode); 3 makes that ten times rarer for 1.2 s more detection.
    int stabilize_attempts = 3;
    // Lookup hops: a hop gives up sooner, because another candidate can take over.
    Duration lookup_hop_timeout = std::chrono::milliseconds(300);
    int lookup_hop_attempts = 2;
    // Bound on FindNext RPCs per lookup; beyond it the lookup fails with hops_exceeded.
    int lookup_hops_max = 32;
    // Candidates a node returns per FindNext step (fallbacks for a hop that times out).
    std::size_t lookup_candidates = 3;
    // Concurrent lookups started by lookup() (maintenance lookups are not counted).
    std::size_t lookups_max = 1024;
    // RPCs in flight at once; start() beyond it fails with busy.
    std::size_t inflight_rpcs_max = 4096;
    // How long a peer that failed an RPC is not approached again on a neighbour's word (its
    // neighbours take a few seconds to notice the failure and stop naming it).
    Duration suspect_duration = std::chrono::seconds(3);
    // Ring merging: a successor or predecessor that failed is remembered this long, and every
    // merge_interval one of them is asked (a lookup of our own id through it) where our
    // successor is on its side. It answers once it is reachable again — after a partition or
    // a cut link healed, when each side has dropped the other and formed a ring of its own —
    // and a successor closer than ours is approached, which pulls the two rings into one.
    Duration merge_interval = std::chrono::seconds(2);
    Duration merge_memory = std::chrono::minutes(10);
    // How long leave() waits for the neighbours' acks before finishing anyway.
    Duration leave_timeout = std::chrono::seconds(2);
    // How long a vnode that announced its leave is not adopted again as successor or
    // predecessor: longer than any message it sent before leaving can be in flight (a late
    // Notify or a neighbour's stale list would otherwise bring it back until failure detection
    // dropped it); a vnode that restarts with the same id is let in after it.
    Duration left_memory = std::chrono::seconds(3);
    // Relative jitter on timer periods and retry backoff, to de-synchronise vnodes.
    double jitter = 0.1;
};

struct LookupResult {
    Peer owner;                  // successor(target)
    std::vector<Peer> replicas;  // owner followed by its successors (the replica set)
    int hops = 0;                // FindNext RPCs sent (0 when answered locally)
    int timeouts = 0;            // hops that timed out and were replaced
};
using LookupCallback = std::function<void(Time now, Result<LookupResult> result)>;
using DoneCallback = std::function<void(Time now, Status status)>;

enum class MemberState { idle, joining, member, leaving, left };
// "idle", "joining", "member", "leaving" or "left".
const char* member_state_name(MemberState state);

// A read-only picture of one vnode, for tests, checkers, chordctl ring and stats.
struct RingState {
    Peer self;
    MemberState state = MemberState::idle;
    std::optional<Peer> predecessor;
    std::vector<Peer> successors;              // nearest first; [self] when alone
    std::vector<std::optional<Peer>> fingers;  // 160 entries; finger i covers self + 2^i
};

struct ProtocolStats {
    std::uint64_t lookups_started = 0;
    std::uint64_t lookups_failed = 0;
    std::uint64_t lookup_hops = 0;
    std::uint64_t lookup_timeouts = 0;
    std::uint64_t rpcs_sent = 0;
    std::uint64_t rpc_timeouts = 0;   // RPCs that used every attempt without an answer
    std::uint64_t rpc_retries = 0;    // resends after a timeout
    std::uint64_t rpcs_rejected = 0;  // calls refused because inflight_rpcs_max was reached
    std::uint64_t messages_received = 0;
    std::uint64_t messages_ignored = 0;  // late replies, wrong state, not for us
    std::uint64_t merge_probes = 0;      // lookups through a departed peer
    std::uint64_t merges = 0;            // probes that found a closer successor to approach
};

class Protocol {
public:
    // `rng` must outlive the Protocol; the owner seeds it (the simulator from its seed).
    Protocol(Peer self, ProtocolOptions options, std::mt19937_64& rng);
    ~Protocol();
    Protocol(const Protocol&) = delete;
    Protocol& operator=(const Protocol&) = delete;

    // Starts a new ring of one vnode: successor = self, no predecessor.
    void create(Time now);
    // Starts a new ring whose members are `members` (which must include self): successors and
    // predecessor are set from their sorted order at once. For the vnodes of one process that
    // start a ring together — all alive and created in the same step — so that they need no
    // joins through a lone vnode, which would converge one stabilize round per vnode.
    void create(Time now, const std::vector<Peer>& members);
    // Joins the ring that the process at `bootstrap_address` belongs to. `done` gets success
    // once a successor answered; timed_out/unreachable when no lookup or fetch succeeded
    // (the vnode is then idle again and may join elsewhere).
    void join(Time now, const std::string& bootstrap_address, DoneCallback done = {});
    // Graceful leave: tells predecessor and successor, waits (bounded) for their acks, then
    // stops answering. `done` gets success when both acked, timed_out otherwise.
    void leave(Time now, DoneCallback done = {});
    // Graceful leave of this vnode together with `co_leaving`: the ids of the other vnodes
    // that leave at the same time (the rest of this process's vnodes). A run of leaving vnodes
    // that are ring neighbours is one gap to close, so each end of the run tells only the
    // neighbour outside it:
    //
    //       P ──► A ──► B ──► C ──► S        A, B, C leave together
    //       P is told by A: "your successors are [S, ...]" (A's list without B, C)
    //       S is told by C: "your predecessor leaves"     (S then accepts P's Notify)
    //       B tells nobody and finishes at once
    //
    // Without the set, A would hand P "your successor is B" — a vnode that is itself gone a
    // moment later — and P would keep it until failure detection dropped it. A run longer than
    // the successor list leaves P nothing to adopt; it then falls back on failure detection.
    void leave(Time now, const std::vector<NodeId>& co_leaving, DoneCallback done = {});

    // Feeds one received envelope (already addressed to this vnode).
    void handle(Time now, const Envelope& in);
    // Runs every timer due at or before `now`.
    void tick(Time now);
    // When tick() must next be called. Time::max() when nothing is scheduled.
    Time next_deadline() const;
    // Messages produced since the last call, in the order they were produced.
    std::vector<Envelope> take_outbox();

    // Finds successor(target). Errors: busy (lookups_max reached), shutting_down (not a
    // member), unreachable (every candidate failed), hops_exceeded.
    void lookup(Time now, const NodeId& target, LookupCallback done);

    const RingState& ring_state() const noexcept { return ring_; }
    const ProtocolStats& stats() const noexcept { return stats_; }
    const ProtocolOptions& options() const noexcept { return options_; }
    const Peer& self() const noexcept { return ring_.self; }
    // Checks local invariants (successor list ordered, no duplicates, no self except when
    // alone, predecessor not self). Empty string when they hold, else what is wrong.
    std::string check_invariants() const;

private:
    struct Lookup {
        NodeId target;
        LookupCallback done;
        std::vector<Peer> candidates;  // not yet asked, closest preceding target first
        std::vector<NodeId> asked;     // asked or failed: never asked again
        std::optional<std::string> bootstrap_address;  // join: first hop by address only
        int hops = 0;
        int timeouts = 0;
        bool counted = false;  // started by lookup(): counts against lookups_max
    };

    // Sending.
    void send(Envelope e);
    void reply_to(const Envelope& request, Message body);
    void call(Time now, const std::string& address, std::optional<NodeId> id, Message body,
              const RpcTracker::Policy& policy, RpcTracker::Callback done);
    void call(Time now, const Peer& to, Message body, RpcTracker::Callback done);
    RpcTracker::Policy maintenance_policy() const;
    RpcTracker::Policy stabilize_policy() const;
    void push_successors();

    // Requests from peers.
    void on_request(Time now, const Envelope& in);
    FindNextReply find_next(const NodeId& target) const;
    std::vector<Peer> closest_preceding_nodes(const NodeId& target, std::size_t count) const;

    // Maintenance.
    void stabilize(Time now);
    // Abandons the stabilize round in flight (its answers are ignored) and starts one now.
    void restart_stabilize(Time now);
    // Stabilize, approach and probe are one round at a time: each start takes a new round
    // number, and an answer for an older round is ignored.
    std::uint64_t begin_round();
    bool end_round(std::uint64_t round);
    void on_stabilize_reply(Time now, const Peer& successor, const Neighbors& n);
    void approach(Time now, const Peer& candidate, std::size_t steps_left);
    void adopt_successors(const Peer& first, const std::vector<Peer>& rest);
    void successor_failed(Time now, const Peer& successor);
    void probe_successors(Time now);
    void notify_successor();
    void rectify(Time now, const Peer& candidate);
    // Tells `to` (whose successor is us) that `between` lies between it and us: an unsolicited
    // Neighbors. The receiver approaches `between` itself; nothing is adopted on our word.
    void send_hint(const Peer& to, const Peer& between);
    void fix_fingers(Time now);
    void on_leave(Time now, const Envelope& in, const Leave& leave);
    // `leaver` leaves (its Leave arrived, or it answered a request with its Leave notice):
    // remember it, drop it from predecessor and successors, continue with its successors.
    void drop_leaver(Time now, const Peer& leaver, const Leave& leave);
    // True if `reply` is a leaving vnode's notice, after drop_leaver() of its sender (only
    // remembered when we are not a member).
    bool dropped_leaver(Time now, const Result<Envelope>& reply);
    void remember_left(Time now, const NodeId& id);
    // It announced its leave within ProtocolOptions::left_memory.
    bool left_recently(const NodeId& id) const;
    // A leaving (or left, while its process is up) vnode's answer to a request.
    void answer_leaving(const Envelope& in);
    void finish_leave(Time now, Status status);
    void forget(const Peer& peer);  // a peer failed an RPC: drop it from the fingers
    // Ring merging (ProtocolOptions::merge_interval).
    void remember_departed(Time now, const Peer& peer);
    void merge_probe(Time now);
    void on_merge_found(Time now, Result<LookupResult> found);
    bool suspected(const NodeId& id) const;
    Duration jittered(Duration interval);

    // Lookups.
    void start_lookup(Time now, Lookup lookup);
    void lookup_step(Time now, std::uint64_t id);
    void lookup_reply(Time now, std::uint64_t id, const Peer& asked, Result<Envelope> reply);
    void add_candidates(Lookup& lookup, const std::vector<Peer>& peers) const;
    void finish_lookup(Time now, std::uint64_t id, Result<LookupResult> result);
    void on_join_found(Time now, Result<LookupResult> found);

    ProtocolOptions options_;
    RingState ring_;
    ProtocolStats stats_;
    std::mt19937_64& rng_;
    RpcTracker rpcs_;
    std::vector<Envelope> outbox_;

    Time stabilize_at_ = Time::max();
    Time fix_fingers_at_ = Time::max();
    Time leave_deadline_ = Time::max();
    bool stabilizing_ = false;
    bool pinging_predecessor_ = false;
    std::optional<Peer> predecessor_candidate_;  // notifier waiting on the ping
    bool fixing_finger_ = false;
    int next_finger_ = 0;
    int leave_acks_pending_ = 0;
    Leave leave_notice_;  // what leave() told the neighbours; the answer to requests since
    std::uint64_t stabilize_round_ = 0;
    DoneCallback join_done_;
    DoneCallback leave_done_;

    // Peers that failed recently, with when to stop suspecting them (bounded, oldest first).
    static constexpr std::size_t kSuspectsMax = 64;
    std::vector<std::pair<NodeId, Time>> suspects_;
    // Vnodes that announced their leave, with when to forget it (bounded, oldest first).
    static constexpr std::size_t kLeftMax = 64;
    std::vector<std::pair<NodeId, Time>> left_;
    // Neighbours that failed (not those that left), with when to stop probing them; bounded.
    static constexpr std::size_t kDepartedMax = 32;
    std::vector<std::pair<Peer, Time>> departed_;
    std::size_t next_departed_ = 0;
    Time merge_at_ = Time::max();
    bool merging_ = false;
    Time now_{};  // the `now` of the latest call, for bookkeeping inside helpers

    std::map<std::uint64_t, Lookup> lookups_;
    std::uint64_t next_lookup_id_ = 1;
    std::size_t counted_lookups_ = 0;
};

}  // namespace chordkv::chord
