// Simulator: many chord::Protocol instances in one process, on a simulated network and clock,
// deterministic by seed.
//
//   events (min-heap by time, then sequence number)
//     deliver ──► process(address).vnode(to_id).handle(now, envelope)
//     wake    ──► tick(now) on the process's vnodes that are due
//     join    ──► a retry of a failed join, via another random member
//     remove  ──► a process whose vnodes all finished leave() goes away
//     check   ──► Zave's invariants, every SimulatorOptions::invariant_check_interval
//   after every call into a Protocol: drain take_outbox() into deliver events (latency, loss,
//   duplication, partitions applied here) and re-arm the process's wake event.
//
// One simulated *process* (node) has the address "n<index>" and hosts `vnodes` Protocols. A
// wake event is pushed only when a process's next deadline moves earlier than the one already
// queued (or that one has fired); superseded wake events are recognised as stale and skipped,
// so the queue holds at most one live wake per process plus the messages in flight.
//
// Determinism: one std::mt19937_64 seeded from the seed drives the network, the ids, the
// choices of bootstrap members and every Protocol (which all share it). Nothing reads a clock:
// simulated time starts at Time{} and moves only from event to event. The same seed and the
// same sequence of calls give the same run, message for message.
//
// Thread-safety: none; one thread drives a Simulator.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "chord/messages.hpp"
#include "chord/node_id.hpp"
#include "chord/protocol.hpp"
#include "tests/sim/checkers.hpp"

namespace chordkv::sim {

using chord::Duration;
using chord::Time;

struct NetworkOptions {
    // One-way latency of each message, uniform in [latency_min, latency_max]. The spread also
    // reorders messages between the same two processes.
    Duration latency_min = std::chrono::milliseconds(5);
    Duration latency_max = std::chrono::milliseconds(50);
    // Probability that a message is lost.
    double loss = 0.0;
    // Probability that a message is delivered twice (the copy gets its own latency).
    double duplication = 0.0;
};

struct SimulatorOptions {
    // Seeds the one RNG of the run; print it with every failure.
    std::uint64_t seed = 1;
    // Given to every Protocol.
    chord::ProtocolOptions protocol;
    NetworkOptions network;
    // Vnodes per process. Vnode v of process i has id SHA-1("n<i>#<v>") (SHA-1("n<i>") when
    // there is one vnode), unless random_ids.
    std::size_t vnodes = 1;
    // Draw ids from the RNG instead of hashing the address: a different ring per seed.
    bool random_ids = false;
    // A join that fails (its bootstrap member died, its messages were lost) is retried after
    // this long via another random member, as a daemon would. Duration::zero(): no retry.
    Duration join_retry_delay = std::chrono::seconds(1);
    // As chordd joins: a process's first vnode through a random member, then each of the
    // others, once the one before it is a member, through the process's own address (its
    // first vnode answers), retried there. false: every vnode through a random member at once.
    bool join_through_own_process = false;
    // Check Zave's invariants this often (simulated), tallying violations; zero: never.
    Duration invariant_check_interval = Duration::zero();
};

// Every message the Protocols produced, and what became of it.
struct MessageCounters {
    std::uint64_t sent = 0;           // taken from outboxes
    std::uint64_t delivered = 0;      // handed to a vnode's handle()
    std::uint64_t lost = 0;           // dropped by NetworkOptions::loss
    std::uint64_t partitioned = 0;    // dropped because sender and receiver were cut apart
    std::uint64_t undeliverable = 0;  // the process was down, or has no such vnode
    std::uint64_t duplicated = 0;     // extra copies made by NetworkOptions::duplication

    std::uint64_t dropped() const { return lost + partitioned + undeliverable; }
};

// Invariant violations over all the samples taken (SimulatorOptions::invariant_check_interval,
// or check_invariants() calls).
struct InvariantTally {
    std::uint64_t samples = 0;
    std::array<std::uint64_t, kInvariantCount> violations{};  // summed over samples
    std::array<std::uint64_t, kInvariantCount> samples_violated{};
    std::vector<std::string> first_messages;  // from the first samples that had any

    std::uint64_t count(Invariant i) const { return violations[static_cast<std::size_t>(i)]; }
    std::uint64_t always_total() const;
    std::uint64_t total() const;
};

class Simulator {
public:
    // Events at one simulated instant beyond which run_until() declares a livelock.
    static constexpr std::size_t kEventsPerInstantMax = 1000000;

    explicit Simulator(SimulatorOptions options);
    ~Simulator();
    Simulator(const Simulator&) = delete;
    Simulator& operator=(const Simulator&) = delete;

    // --- membership ------------------------------------------------------------------------
    // Processes are numbered from 0 in order of creation; numbers are never reused.

    // A new process whose vnodes start a ring of their own, all of them members at once.
    std::size_t create_node();
    // A new process whose vnodes join via a random live member process (create_node() when
    // there is none).
    std::size_t join_node();
    // The process stops at once: its Protocols are destroyed, messages to it are dropped.
    // Must not be called from inside a Protocol callback.
    void crash(std::size_t node);
    // A crashed or departed process comes back with the same address and ids and joins via a
    // random live member.
    void restart(std::size_t node);
    // Graceful leave of every vnode of the process; the process goes down once all are done.
    void leave(std::size_t node);
    // Partitions: processes in different groups cannot reach each other (messages arriving
    // across groups are dropped) until heal(). Every process starts in group 0.
    void set_group(std::size_t node, int group);
    void heal();

    // --- time ------------------------------------------------------------------------------

    Time now() const noexcept { return now_; }
    // Runs every event due at or before `t`, then sets now() = t. Throws std::runtime_error
    // (naming the seed and the process) when simulated time stops advancing: more than
    // kEventsPerInstantMax events at one instant means some Protocol never lets time pass.
    void run_until(Time t);
    void run_for(Duration d) { run_until(now_ + d); }
    // Runs until the ideal state holds (checked every stabilize interval) or `deadline`
    // passes. Returns how long it took (zero if it already held), nullopt on timeout.
    std::optional<Duration> run_until_converged(Time deadline);
    // The ideal-state violations of the current states (empty = ideal).
    std::vector<std::string> ideal_violations(std::size_t violations_max = 64) const;
    bool is_ideal() const { return ideal_violations(1).empty(); }
    // Zave's invariants on the current states; also added to the tally.
    InvariantReport check_invariants();
    const InvariantTally& invariant_tally() const noexcept { return tally_; }

    // --- lookups ---------------------------------------------------------------------------

    // Starts a lookup at vnode `vnode` of process `node` (which must be up). `done` runs
    // inside some later event (or at once when the answer is local).
    void lookup(std::size_t node, const chord::NodeId& target, chord::LookupCallback done,
                std::size_t vnode = 0);

    // --- inspection ------------------------------------------------------------------------

    const SimulatorOptions& options() const noexcept { return options_; }
    // The run's only RNG; tests draw their random choices from it too.
    std::mt19937_64& rng() noexcept { return rng_; }
    // A uniformly random point of the ring, from rng().
    chord::NodeId random_id();
    // The network model may change between calls (e.g. loss only during a churn phase).
    NetworkOptions& network() noexcept { return options_.network; }
    std::size_t node_count() const noexcept { return processes_.size(); }
    bool is_up(std::size_t node) const;
    // Up processes, in index order.
    std::vector<std::size_t> up_nodes() const;
    // Up processes whose every vnode is a member.
    std::vector<std::size_t> member_nodes() const;
    // A random up process whose vnodes are all members; nullopt when there is none.
    std::optional<std::size_t> random_member_node();
    const std::string& address(std::size_t node) const;
    // Ids of the live (member) vnodes, sorted.
    std::vector<chord::NodeId> live_ids() const;
    Oracle oracle() const { return Oracle::of(states()); }
    // Every vnode of every up process (left vnodes included; the checkers skip them).
    StateRefs states() const;
    // Requires is_up(node).
    const chord::RingState& ring_state(std::size_t node, std::size_t vnode = 0) const;
    const chord::Protocol& protocol(std::size_t node, std::size_t vnode = 0) const;
    // One line per vnode: id, state, predecessor, successors. For failure reports.
    std::string dump(std::size_t node) const;
    const MessageCounters& messages() const noexcept { return messages_; }
    // Summed over the vnodes of up processes.
    chord::ProtocolStats protocol_stats() const;
    std::uint64_t join_failures() const noexcept { return join_failures_; }
    std::size_t events_processed() const noexcept { return events_processed_; }

private:
    enum class EventKind : std::uint8_t { deliver, wake, join, remove, check };
    struct Event {
        Time at;
        std::uint64_t seq = 0;
        EventKind kind = EventKind::deliver;
        std::size_t node = 0;           // destination / subject process
        std::size_t from = 0;           // deliver: sender process
        std::uint32_t incarnation = 0;  // wake, join, remove: the process life it belongs to
        std::size_t slot = 0;           // deliver: index into envelopes_; join: the vnode
        bool via_own = false;           // join: through the process's own address
    };
    struct Later {
        bool operator()(const Event& a, const Event& b) const {
            return a.at != b.at ? a.at > b.at : a.seq > b.seq;
        }
    };
    struct Process {
        std::string address;
        std::vector<chord::NodeId> ids;
        std::vector<std::unique_ptr<chord::Protocol>> vnodes;  // empty while down
        bool up = false;
        std::uint32_t incarnation = 0;  // bumped on every start and stop
        int group = 0;
        Time wake_at = Time::max();  // the live wake event, if any
        std::size_t leaves_pending = 0;
    };

    std::size_t add_process();
    void start(std::size_t node, bool create);
    void join_vnode(std::size_t node, std::size_t vnode, const std::string& bootstrap);
    void stop(std::size_t node);
    void push(Event e);
    void process(Event& e);
    [[noreturn]] void throw_livelock(const Event& e) const;
    void deliver(const Event& e);
    void wake(std::size_t node);
    // After any call into the process: send its outboxes and re-arm its wake event.
    void settle(std::size_t node);
    void send(std::size_t from, chord::Envelope envelope);
    Duration latency();
    bool chance(double p);
    std::optional<std::size_t> node_of(const std::string& address) const;
    chord::NodeId make_id(std::size_t node, std::size_t vnode);

    SimulatorOptions options_;
    std::mt19937_64 rng_;
    Time now_{};
    std::uint64_t next_seq_ = 0;
    std::priority_queue<Event, std::vector<Event>, Later> events_;
    std::vector<chord::Envelope> envelopes_;  // messages in flight, by slot
    std::vector<std::size_t> free_slots_;
    std::vector<Process> processes_;
    std::unordered_map<std::string, std::size_t> by_address_;
    std::vector<std::size_t> up_;           // up processes, unordered (for random choice)
    std::vector<std::size_t> up_position_;  // index of each process in up_, if up
    MessageCounters messages_;
    InvariantTally tally_;
    std::uint64_t join_failures_ = 0;
    std::size_t events_processed_ = 0;
    std::size_t events_this_instant_ = 0;
    int calling_ = 0;  // > 0 while inside a Protocol call
};

// What a batch of lookups found, judged against the oracle.
struct LookupSummary {
    std::size_t issued = 0;
    std::size_t completed = 0;
    std::size_t wrong = 0;              // completed with an owner other than successor(target)
    std::size_t errors = 0;             // completed with an error
    std::vector<int> hops;              // per correct lookup
    std::uint64_t timeouts = 0;         // hops that timed out, over every completed lookup
    std::vector<std::string> failures;  // the first few wrong or failed ones, explained

    // Wrong, failed, or not finished by the deadline.
    std::size_t failed() const { return wrong + errors + (issued - completed); }
    double mean_hops() const;
    // The q-quantile (0..1) of hops; 0 when there is none.
    int hops_quantile(double q) const;
};

// Issues `count` lookups of random targets from random member processes, all at now(); runs
// the simulation until every one has completed or `deadline` passes; and checks each answer
// against the oracle of the ring as it was when they were issued (so the ring should be quiet
// meanwhile). Requires at least one member process.
LookupSummary run_lookups(Simulator& sim, std::size_t count, Time deadline);

}  // namespace chordkv::sim
