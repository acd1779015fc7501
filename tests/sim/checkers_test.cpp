// The checkers judge every simulation, so they are tested first, on hand-built snapshots: an
// ideal ring passes, and each kind of damage is reported under the right name.
#include "tests/sim/checkers.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

namespace chordkv::sim {
namespace {

using chord::MemberState;
using chord::NodeId;
using chord::Peer;
using chord::RingState;

// Vnode v has id v and address "n<v>", so messages are easy to read and predict.
Peer peer(std::uint64_t v) {
    return Peer{NodeId::from_uint64(v), "n" + std::to_string(v)};
}

RingState member(std::uint64_t self, std::initializer_list<std::uint64_t> successors,
                 std::optional<std::uint64_t> predecessor) {
    RingState s;
    s.self = peer(self);
    s.state = MemberState::member;
    for (std::uint64_t v : successors) s.successors.push_back(peer(v));
    if (predecessor) s.predecessor = peer(*predecessor);
    s.fingers.assign(NodeId::kBits, std::nullopt);
    return s;
}

// The ideal ring of `ids` (sorted) with successor lists of length r.
std::vector<RingState> ideal_ring(const std::vector<std::uint64_t>& ids, std::size_t r) {
    std::vector<RingState> out;
    const std::size_t n = ids.size();
    for (std::size_t k = 0; k < n; ++k) {
        RingState s = member(ids[k], {}, std::nullopt);
        if (n == 1) {
            s.successors.push_back(s.self);
        } else {
            for (std::size_t j = 1; j <= std::min(r, n - 1); ++j) {
                s.successors.push_back(peer(ids[(k + j) % n]));
            }
            s.predecessor = peer(ids[(k + n - 1) % n]);
        }
        out.push_back(s);
    }
    return out;
}

RingState& state_of(std::vector<RingState>& states, std::uint64_t v) {
    for (RingState& s : states) {
        if (s.self.id == NodeId::from_uint64(v)) return s;
    }
    ADD_FAILURE() << "no state for " << v;
    return states.front();
}

bool any_contains(const std::vector<std::string>& messages, const std::string& text) {
    return std::any_of(messages.begin(), messages.end(),
                       [&](const std::string& m) { return m.find(text) != std::string::npos; });
}

std::string joined(const std::vector<std::string>& messages) {
    std::string out;
    for (const auto& m : messages) out += m + "\n";
    return out;
}

// --- oracle and lookups -----------------------------------------------------------------

TEST(OracleTest, SuccessorIsTheFirstIdAtOrAfterTheTargetAndWraps) {
    const Oracle oracle({NodeId::from_uint64(30), NodeId::from_uint64(10), NodeId::from_uint64(20),
                         NodeId::from_uint64(20)});
    EXPECT_EQ(oracle.size(), 3u);
    EXPECT_EQ(oracle.successor(NodeId::from_uint64(5)), NodeId::from_uint64(10));
    EXPECT_EQ(oracle.successor(NodeId::from_uint64(10)), NodeId::from_uint64(10));
    EXPECT_EQ(oracle.successor(NodeId::from_uint64(11)), NodeId::from_uint64(20));
    EXPECT_EQ(oracle.successor(NodeId::from_uint64(31)), NodeId::from_uint64(10));
    EXPECT_EQ(oracle.successor(NodeId::max()), NodeId::from_uint64(10));
    EXPECT_TRUE(oracle.contains(NodeId::from_uint64(20)));
    EXPECT_FALSE(oracle.contains(NodeId::from_uint64(25)));
}

TEST(OracleTest, CountsOnlyMembers) {
    std::vector<RingState> states = ideal_ring({10, 20, 30}, 2);
    state_of(states, 20).state = MemberState::joining;
    const Oracle oracle = Oracle::of(refs(states));
    EXPECT_EQ(oracle.ids(),
              (std::vector<NodeId>{NodeId::from_uint64(10), NodeId::from_uint64(30)}));
}

TEST(CheckLookupTest, AcceptsTheSuccessorAndNamesAWrongOwner) {
    const Oracle oracle({NodeId::from_uint64(10), NodeId::from_uint64(20)});
    chord::LookupResult right;
    right.owner = peer(20);
    right.replicas = {peer(20), peer(10)};
    EXPECT_EQ(check_lookup(oracle, NodeId::from_uint64(15), right), "");

    chord::LookupResult wrong = right;
    wrong.owner = peer(10);
    wrong.replicas = {peer(10), peer(20)};
    const std::string why = check_lookup(oracle, NodeId::from_uint64(15), wrong);
    EXPECT_NE(why.find("answered n10/"), std::string::npos) << why;

    chord::LookupResult bad_replicas = right;
    bad_replicas.replicas = {peer(10)};
    EXPECT_NE(check_lookup(oracle, NodeId::from_uint64(15), bad_replicas), "");
    EXPECT_NE(check_lookup(Oracle(), NodeId::from_uint64(15), right), "");
}

// --- ideal state ------------------------------------------------------------------------

TEST(CheckIdealTest, IdealRingsPass) {
    for (std::size_t n : {1, 2, 3, 5, 12}) {
        for (std::size_t r : {1, 3, 8}) {
            std::vector<std::uint64_t> ids;
            for (std::size_t k = 0; k < n; ++k) ids.push_back(100 + 10 * k);
            const auto states = ideal_ring(ids, r);
            EXPECT_EQ(joined(check_ideal(states, r)), "") << "n=" << n << " r=" << r;
            EXPECT_EQ(check_invariants(refs(states)).total(), 0u) << "n=" << n << " r=" << r;
        }
    }
}

TEST(CheckIdealTest, LoneVnodeMayHaveNoPredecessorOrItself) {
    std::vector<RingState> states = {member(10, {10}, std::nullopt)};
    EXPECT_TRUE(check_ideal(states, 8).empty());
    states[0].predecessor = peer(10);
    EXPECT_TRUE(check_ideal(states, 8).empty());
    states[0].predecessor = peer(99);  // a departed vnode
    const auto v = check_ideal(states, 8);
    ASSERT_EQ(v.size(), 1u);
    EXPECT_NE(v[0].find("alone but has predecessor n99/"), std::string::npos) << v[0];
}

TEST(CheckIdealTest, WrongPredecessorIsReported) {
    std::vector<RingState> states = ideal_ring({10, 20, 30, 40}, 3);
    state_of(states, 30).predecessor = peer(10);
    const auto v = check_ideal(states, 3);
    ASSERT_EQ(v.size(), 1u) << joined(v);
    EXPECT_NE(v[0].find("n30/"), std::string::npos);
    EXPECT_NE(v[0].find("has predecessor n10/"), std::string::npos) << v[0];
    EXPECT_NE(v[0].find("expected n20/"), std::string::npos) << v[0];

    state_of(states, 30).predecessor.reset();
    EXPECT_TRUE(any_contains(check_ideal(states, 3), "n30/00000000 has no predecessor"))
        << joined(check_ideal(states, 3));
}

TEST(CheckIdealTest, ShortOrStaleSuccessorListIsReported) {
    std::vector<RingState> states = ideal_ring({10, 20, 30, 40}, 3);
    state_of(states, 10).successors.pop_back();     // too short
    state_of(states, 20).successors[2] = peer(25);  // names a vnode that is not there
    const auto v = check_ideal(states, 3);
    EXPECT_EQ(v.size(), 2u) << joined(v);
    EXPECT_TRUE(any_contains(v, "n10/00000000 has successors [n20/")) << joined(v);
    EXPECT_TRUE(any_contains(v, "n20/00000000 has successors")) << joined(v);
}

TEST(CheckIdealTest, NonMembersAreNotIdealButLeftVnodesAreGone) {
    std::vector<RingState> states = ideal_ring({10, 20, 30}, 2);
    RingState joining = member(15, {20}, std::nullopt);
    joining.state = MemberState::joining;
    states.push_back(joining);
    auto v = check_ideal(states, 2);
    ASSERT_FALSE(v.empty());
    EXPECT_NE(v[0].find("n15/00000000 is joining, not a member"), std::string::npos) << v[0];

    states.back().state = MemberState::left;
    EXPECT_TRUE(check_ideal(states, 2).empty()) << joined(check_ideal(states, 2));
}

TEST(CheckIdealTest, EmptyAndDuplicateIdsAreReported) {
    EXPECT_TRUE(any_contains(check_ideal(std::vector<RingState>{}, 2), "no member vnode"));
    std::vector<RingState> states = ideal_ring({10, 20}, 2);
    states.push_back(states.back());
    EXPECT_TRUE(any_contains(check_ideal(states, 2), "share an id"));
}

TEST(CheckIdealTest, StopsAtViolationsMax) {
    std::vector<RingState> states;
    for (std::uint64_t v = 1; v <= 50; ++v) states.push_back(member(v, {v}, std::nullopt));
    const auto v = check_ideal(states, 8, 5);
    ASSERT_EQ(v.size(), 5u);
    EXPECT_EQ(v.back(), "... more violations not listed");
    EXPECT_EQ(check_ideal(states, 8, 1).size(), 1u);
}

// --- Zave's invariants ------------------------------------------------------------------

TEST(InvariantsTest, SplitRingBreaksAtMostOneRing) {
    // Two ordered rings {10, 30} and {20, 40}: each is fine on its own.
    std::vector<RingState> states = {member(10, {30}, 30), member(30, {10}, 10),
                                     member(20, {40}, 40), member(40, {20}, 20)};
    const InvariantReport report = check_invariants(refs(states));
    EXPECT_EQ(report.rings, 2u);
    EXPECT_EQ(report.count(Invariant::at_most_one_ring), 1u);
    EXPECT_EQ(report.count(Invariant::at_least_one_ring), 0u);
    EXPECT_EQ(report.count(Invariant::ordered_ring), 0u);
    EXPECT_TRUE(any_contains(report.messages, "AtMostOneRing: 2 rings")) << joined(report.messages);
    EXPECT_FALSE(check_ideal(states, 1).empty());
}

TEST(InvariantsTest, DisorderedRingBreaksOrderedRing) {
    // One cycle 10 -> 30 -> 20 -> 40 -> 10 goes around the id space twice.
    std::vector<RingState> states = {member(10, {30}, 40), member(30, {20}, 10),
                                     member(20, {40}, 30), member(40, {10}, 20)};
    const InvariantReport report = check_invariants(refs(states));
    EXPECT_EQ(report.rings, 1u);
    EXPECT_EQ(report.count(Invariant::at_most_one_ring), 0u);
    EXPECT_GT(report.count(Invariant::ordered_ring), 0u);
    EXPECT_TRUE(any_contains(report.messages,
                             "OrderedRing: n10/00000000 -> n30/00000000 skips "
                             "ring member n20/00000000"))
        << joined(report.messages);
    EXPECT_EQ(report.always_total(), 0u);
}

TEST(InvariantsTest, DuplicatesAndSelfInTheListBreakNoDuplicates) {
    std::vector<RingState> states = ideal_ring({10, 20, 30, 40}, 3);
    state_of(states, 10).successors = {peer(20), peer(20), peer(30)};
    state_of(states, 30).successors = {peer(40), peer(10), peer(30)};
    const InvariantReport report = check_invariants(refs(states));
    EXPECT_EQ(report.count(Invariant::no_duplicates), 2u) << joined(report.messages);
    EXPECT_TRUE(any_contains(report.messages, "NoDuplicates: n10/00000000 has [n20/"))
        << joined(report.messages);
    EXPECT_TRUE(any_contains(report.messages, "NoDuplicates: n30/"));
}

TEST(InvariantsTest, OutOfOrderListBreaksOrderedSuccessorLists) {
    std::vector<RingState> states = ideal_ring({10, 20, 30, 40}, 3);
    state_of(states, 30).successors = {peer(40), peer(20), peer(10)};  // wraps past self
    const InvariantReport report = check_invariants(refs(states));
    EXPECT_EQ(report.count(Invariant::ordered_successor_lists), 1u);
    EXPECT_TRUE(any_contains(report.messages, "OrderedSuccessorLists: n30/"))
        << joined(report.messages);
    EXPECT_EQ(report.count(Invariant::no_duplicates), 0u);
}

TEST(InvariantsTest, BestSuccessorSkipsDeadEntries) {
    // 20 crashed (absent) and 30 is still joining: lists naming them stay valid, since the best
    // successor is the first live entry.
    std::vector<RingState> states = ideal_ring({10, 20, 30, 40, 50}, 3);
    states.erase(states.begin() + 1);
    state_of(states, 30).state = MemberState::joining;
    const InvariantReport report = check_invariants(refs(states));
    EXPECT_EQ(report.total(), 0u) << joined(report.messages);
    EXPECT_EQ(report.members, 3u);
    EXPECT_EQ(report.ring_members, 3u);
}

TEST(InvariantsTest, AppendagesMustReachTheRing) {
    // 15 has joined (successor 20) but nobody points to it yet: a connected appendage.
    std::vector<RingState> states = ideal_ring({10, 20, 30}, 2);
    states.push_back(member(15, {20, 30}, std::nullopt));
    InvariantReport report = check_invariants(refs(states));
    EXPECT_EQ(report.total(), 0u) << joined(report.messages);
    EXPECT_EQ(report.ring_members, 3u);
    EXPECT_FALSE(check_ideal(states, 2).empty());

    // 16 points only at dead vnodes, 17 hangs off 16: neither reaches the ring.
    states.push_back(member(16, {98, 99}, std::nullopt));
    states.push_back(member(17, {16}, std::nullopt));
    report = check_invariants(refs(states));
    EXPECT_EQ(report.count(Invariant::connected_appendages), 2u) << joined(report.messages);
    EXPECT_TRUE(any_contains(report.messages,
                             "ConnectedAppendages: n17/00000000 reaches no ring: "
                             "n16/00000000 has no live successor in [n98/"))
        << joined(report.messages);
}

TEST(InvariantsTest, NoCycleBreaksAtLeastOneRing) {
    std::vector<RingState> states = {member(10, {20}, std::nullopt),
                                     member(20, {30}, std::nullopt)};  // 30 is dead
    const InvariantReport report = check_invariants(refs(states));
    EXPECT_EQ(report.rings, 0u);
    EXPECT_EQ(report.count(Invariant::at_least_one_ring), 1u);
    EXPECT_EQ(report.count(Invariant::connected_appendages), 2u);
    EXPECT_GT(report.always_total(), 0u);
}

TEST(InvariantsTest, LoneVnodeIsARing) {
    std::vector<RingState> states = {member(10, {10}, std::nullopt)};
    const InvariantReport report = check_invariants(refs(states));
    EXPECT_EQ(report.rings, 1u);
    EXPECT_EQ(report.total(), 0u) << joined(report.messages);
    EXPECT_EQ(check_invariants(StateRefs{}).total(), 0u);
}

}  // namespace
}  // namespace chordkv::sim
