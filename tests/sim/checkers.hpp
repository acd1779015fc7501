// Checkers: judge snapshots of many vnodes' RingStates against an oracle that knows every live
// vnode, so a simulation can assert correctness at every sampled step, not only at the end.
//
// Liveness, for every checker here: a vnode is *live* when its RingState is among the states
// passed in and its state is `member`. Anything else named in a successor list or predecessor
// — crashed (absent), still joining, idle after a failed join, leaving or left — counts as dead:
// it is not (or no longer) on the ring and will not answer as a member.
//
//   Oracle            the sorted ids of the live vnodes; successor(k) = first live id >= k.
//   check_lookup      a lookup's owner must be the oracle's successor(target).
//   check_ideal       the quiescent goal: one ordered ring of every vnode, each successor list
//                     = the next min(r, N-1) vnodes, each predecessor = the previous vnode.
//   check_invariants  Zave's six invariants of the corrected Chord ("Reasoning about identifier
//                     spaces: How to make Chord correct", IEEE TSE 2017) on the graph where each
//                     member points to its *best successor* = the first live entry of its
//                     successor list.
//
// Every checker is O(N·r) (plus sorting), so simulations of thousands of vnodes can run them on
// a sample of steps. All are pure functions of their arguments.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "chord/node_id.hpp"
#include "chord/protocol.hpp"

namespace chordkv::sim {

// Non-owning views of the states to check; the pointees must outlive the call.
using StateRefs = std::vector<const chord::RingState*>;

// Views of `states`, for checking hand-built snapshots.
StateRefs refs(const std::vector<chord::RingState>& states);

// "n7/1a2b3c4d": address and short id, for violation messages.
std::string describe(const chord::Peer& peer);

// The ground truth: the sorted, distinct ids of the live vnodes.
class Oracle {
public:
    Oracle() = default;
    explicit Oracle(std::vector<chord::NodeId> live);
    // The live (member) vnodes among `states`.
    static Oracle of(const StateRefs& states);

    std::size_t size() const noexcept { return ids_.size(); }
    bool empty() const noexcept { return ids_.empty(); }
    bool contains(const chord::NodeId& id) const;
    // successor(target): the first live id >= target, wrapping past zero. Requires !empty().
    const chord::NodeId& successor(const chord::NodeId& target) const;
    const std::vector<chord::NodeId>& ids() const noexcept { return ids_; }

private:
    std::vector<chord::NodeId> ids_;
};

// Empty when `result` names the oracle's successor(target) as owner and as first replica; else
// a description of what is wrong. An empty oracle makes every answer wrong.
std::string check_lookup(const Oracle& oracle, const chord::NodeId& target,
                         const chord::LookupResult& result);

// Violations of the ideal state, at most `violations_max` of them (the last one then says that
// more were left out); empty = ideal. `successors` is the configured list length r.
//
//  - every state is a member (`left` states are skipped: they are gone, not failing);
//  - no two members share an id; there is at least one member;
//  - each member's successor list is exactly the next min(r, N-1) members in ring order;
//  - each member's predecessor is the previous member. For N == 1 the predecessor may be
//    absent or self: a lone vnode after create() has none, and one that was alone with itself
//    may name itself; both describe the same one-vnode ring.
std::vector<std::string> check_ideal(const StateRefs& states, std::size_t successors,
                                     std::size_t violations_max = 64);
std::vector<std::string> check_ideal(const std::vector<chord::RingState>& states,
                                     std::size_t successors, std::size_t violations_max = 64);

// Zave's invariants, on the members and their best successors.
enum class Invariant : std::size_t {
    at_least_one_ring,        // some member reaches itself by following best successors
    at_most_one_ring,         // ... and there is only one such cycle
    ordered_ring,             // on a ring, no ring member lies strictly between a member and its
                              // best successor (the ring goes around the id space once, sorted)
    connected_appendages,     // every member off the ring reaches it by best successors
    ordered_successor_lists,  // each list strictly increases in clockwise distance from its owner
    no_duplicates,            // no id twice in a list; self only as the whole list [self]
};
inline constexpr std::size_t kInvariantCount = 6;
const char* invariant_name(Invariant invariant);

// The invariants the corrected protocol keeps in every reachable state, including during joins,
// failures and lossy delivery (with r large enough that no member loses every successor at
// once). Simulations assert these at every sample; all six only after quiescence.
inline constexpr std::array<Invariant, 4> kAlwaysInvariants = {
    Invariant::at_least_one_ring, Invariant::at_most_one_ring, Invariant::ordered_successor_lists,
    Invariant::no_duplicates};

struct InvariantReport {
    // Per invariant: how many members (or, for the ring counts, how many rings too few/many)
    // break it.
    std::array<std::size_t, kInvariantCount> violations{};
    // The first `messages_max` violations, "<invariant>: <what>".
    std::vector<std::string> messages;
    std::size_t members = 0;       // live vnodes checked
    std::size_t rings = 0;         // cycles of the best-successor graph
    std::size_t ring_members = 0;  // members on some cycle

    std::size_t count(Invariant invariant) const {
        return violations[static_cast<std::size_t>(invariant)];
    }
    std::size_t total() const;
    // Sum over kAlwaysInvariants.
    std::size_t always_total() const;
};

InvariantReport check_invariants(const StateRefs& states, std::size_t messages_max = 32);

}  // namespace chordkv::sim
