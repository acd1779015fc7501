// Sim tier: whole rings of chord::Protocol on the simulated network, with joins, crashes,
// leaves, loss, duplication and partitions, judged by the oracle checkers — lookups against
// successor(target), states against the ideal ring, and Zave's invariants sampled during the
// run. Every failure names the seed that reproduces it (`chordsim --seed` or the same test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "tests/sim/checkers.hpp"
#include "tests/sim/simulator.hpp"

namespace chordkv::sim {
namespace {

using namespace std::chrono_literals;

std::string lines(const std::vector<std::string>& messages) {
    std::string out;
    for (const auto& m : messages) out += "  " + m + "\n";
    return out;
}

std::string tally_text(const InvariantTally& t) {
    std::ostringstream out;
    out << t.samples << " samples;";
    for (std::size_t i = 0; i < kInvariantCount; ++i) {
        out << " " << invariant_name(static_cast<Invariant>(i)) << "=" << t.violations[i] << " in "
            << t.samples_violated[i];
    }
    out << "\n" << lines(t.first_messages);
    return out.str();
}

// Dumps of the processes a violation list names ("n12/..."), for failure reports.
std::string dump_named(const Simulator& sim, const std::vector<std::string>& messages) {
    std::string out;
    std::vector<std::size_t> seen;
    for (const auto& m : messages) {
        for (std::size_t at = m.find('n'); at != std::string::npos; at = m.find('n', at + 1)) {
            std::size_t end = at + 1;
            while (end < m.size() && std::isdigit(static_cast<unsigned char>(m[end]))) ++end;
            if (end == at + 1 || end >= m.size() || m[end] != '/') continue;
            const std::size_t node = std::stoul(m.substr(at + 1, end - at - 1));
            if (node >= sim.node_count() ||
                std::find(seen.begin(), seen.end(), node) != seen.end()) {
                continue;
            }
            seen.push_back(node);
            out += sim.dump(node);
            if (seen.size() >= 12) return out;
        }
    }
    return out;
}

// Node 0 creates the ring; `nodes - 1` more join one by one, `spacing` apart, each through a
// random member.
void grow(Simulator& sim, std::size_t nodes, Duration spacing) {
    sim.create_node();
    for (std::size_t i = 1; i < nodes; ++i) {
        sim.run_for(spacing);
        sim.join_node();
    }
}

// Asserts convergence to the ideal ring within `limit`, dumping what is wrong otherwise.
void expect_converges(Simulator& sim, Duration limit) {
    const auto took = sim.run_until_converged(sim.now() + limit);
    if (!took) {
        const auto v = sim.ideal_violations(20);
        ADD_FAILURE() << "not ideal after " << std::chrono::duration<double>(limit).count()
                      << " s simulated; " << sim.up_nodes().size() << " processes up\n"
                      << lines(v) << "states:\n"
                      << dump_named(sim, v);
    }
}

void expect_lookups_correct(Simulator& sim, std::size_t count, LookupSummary* out = nullptr) {
    const LookupSummary s = run_lookups(sim, count, sim.now() + 60s);
    EXPECT_EQ(s.issued, count);
    EXPECT_EQ(s.completed, s.issued) << "lookups never finished";
    EXPECT_EQ(s.wrong, 0u) << lines(s.failures);
    EXPECT_EQ(s.errors, 0u) << lines(s.failures);
    if (out) *out = s;
}

void expect_all_invariants(Simulator& sim) {
    const InvariantReport r = sim.check_invariants();
    EXPECT_EQ(r.total(), 0u) << lines(r.messages) << dump_named(sim, r.messages);
    EXPECT_EQ(r.rings, 1u);
    EXPECT_EQ(r.ring_members, r.members);
}

void expect_always_invariants_held(const Simulator& sim) {
    const InvariantTally& t = sim.invariant_tally();
    EXPECT_GT(t.samples, 0u);
    EXPECT_EQ(t.always_total(), 0u) << tally_text(t);
}

SimulatorOptions options_for(std::uint64_t seed) {
    SimulatorOptions o;
    o.seed = seed;
    o.random_ids = true;  // a different ring shape per seed
    o.invariant_check_interval = 250ms;
    return o;
}

// (a) Nodes join through random members, the ring converges to the ideal state, and lookups
// are all correct and take about ½·log2(N) hops.
TEST(SimTest, JoinsConvergeAndLookupsAreCorrectAndShort) {
    for (std::uint64_t seed : {1, 2, 3, 4}) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        constexpr std::size_t kNodes = 160;
        Simulator sim(options_for(seed));
        grow(sim, kNodes, 50ms);
        expect_converges(sim, 120s);
        sim.run_for(10s);  // fix_fingers fills the finger tables
        EXPECT_TRUE(sim.is_ideal()) << lines(sim.ideal_violations());
        expect_all_invariants(sim);
        expect_always_invariants_held(sim);
        LookupSummary s;
        expect_lookups_correct(sim, 2000, &s);
        const double bound = 0.5 * std::log2(static_cast<double>(kNodes)) + 0.5;
        EXPECT_LE(s.mean_hops(), bound)
            << "p50 " << s.hops_quantile(0.5) << " p99 " << s.hops_quantile(0.99);
        EXPECT_EQ(s.timeouts, 0u);
        EXPECT_EQ(sim.join_failures(), 0u);
    }
}

// (b) A quarter of the nodes crash at once: the rest repair the ring, and no lookup fails
// once it is ideal again.
TEST(SimTest, RecoversFromAQuarterOfTheNodesCrashingAtOnce) {
    for (std::uint64_t seed : {11, 12, 13, 14}) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        constexpr std::size_t kNodes = 200;
        Simulator sim(options_for(seed));
        grow(sim, kNodes, 30ms);
        expect_converges(sim, 120s);
        sim.run_for(5s);
        std::vector<std::size_t> up = sim.up_nodes();
        std::shuffle(up.begin(), up.end(), sim.rng());
        for (std::size_t i = 0; i < kNodes / 4; ++i) sim.crash(up[i]);
        ASSERT_EQ(sim.up_nodes().size(), kNodes - kNodes / 4);
        expect_converges(sim, 120s);
        expect_all_invariants(sim);
        expect_always_invariants_held(sim);
        expect_lookups_correct(sim, 2000);
    }
}

// One churn run: grow, then random joins, crashes, restarts and leaves on a lossy network,
// then quiet until the ring is ideal again.
void churn_run(std::uint64_t seed, std::size_t nodes, int events) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimulatorOptions o = options_for(seed);
    o.network.loss = 0.05;
    o.network.duplication = 0.01;
    o.invariant_check_interval = 100ms;
    Simulator sim(o);
    grow(sim, nodes, 50ms);
    expect_converges(sim, 120s);
    std::uniform_int_distribution<int> kind(0, 99);
    std::vector<std::size_t> down;
    for (int i = 0; i < events; ++i) {
        sim.run_for(std::chrono::milliseconds(100 + kind(sim.rng()) * 6));
        const int k = kind(sim.rng());
        const std::vector<std::size_t> members = sim.member_nodes();
        if (k < 35 || members.size() < nodes / 2) {
            if (!down.empty() && k % 2 == 0) {
                sim.restart(down.back());
                down.pop_back();
            } else {
                sim.join_node();
            }
        } else if (k < 70) {
            const std::size_t victim = members[static_cast<std::size_t>(k) % members.size()];
            sim.crash(victim);
            down.push_back(victim);
        } else {
            sim.leave(members[static_cast<std::size_t>(k) % members.size()]);
        }
    }
    expect_converges(sim, 180s);
    expect_all_invariants(sim);
    expect_always_invariants_held(sim);
    // Lookups are judged on a clean network: under loss a live successor can be dropped after
    // its RPC attempts are all lost (a false failure detection), and until the next stabilize
    // round answers for its arc are legitimately stale. Lookups under loss on a quiet ring
    // are the subject of LookupsSurviveFivePercentLoss. Waiting out the RPCs already in flight
    // (their last attempt times out ~2.1 s after it was sent) keeps that out of this check.
    sim.network().loss = 0;
    sim.network().duplication = 0;
    sim.run_for(5s);
    expect_converges(sim, 60s);
    expect_lookups_correct(sim, 200);
}

// (c) Churn on a lossy network, over many seeds: the always-invariants hold at every sample,
// and after quiet the ring is ideal with all six invariants.
TEST(SimTest, ChurnWithLossKeepsInvariantsAndConverges) {
    for (std::uint64_t seed = 100; seed < 140; ++seed) churn_run(seed, 50, 80);
}

// A quiet, converged ring on a network that loses 5% of messages: a hop that times out is
// replaced by the next-best candidate (DESIGN.md), so lookups should still all succeed.
TEST(SimTest, LookupsSurviveFivePercentLoss) {
    const std::uint64_t seed = 31;
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimulatorOptions o = options_for(seed);
    o.network.loss = 0.05;
    Simulator sim(o);
    grow(sim, 50, 50ms);
    expect_converges(sim, 120s);
    expect_lookups_correct(sim, 2000);
}

// A fingerprint of a whole run: message counters and every final state.
std::string run_fingerprint(std::uint64_t seed) {
    SimulatorOptions o = options_for(seed);
    o.network.loss = 0.05;
    o.network.duplication = 0.02;
    Simulator sim(o);
    grow(sim, 40, 50ms);
    sim.run_for(20s);
    for (std::size_t i = 0; i < 5; ++i) sim.crash(sim.member_nodes()[i * 3]);
    sim.leave(sim.member_nodes().back());
    sim.join_node();
    sim.run_for(20s);
    const LookupSummary s = run_lookups(sim, 100, sim.now() + 30s);
    std::ostringstream out;
    const MessageCounters& m = sim.messages();
    out << m.sent << " " << m.delivered << " " << m.lost << " " << m.partitioned << " "
        << m.undeliverable << " " << m.duplicated << " " << sim.events_processed() << "\n";
    out << s.completed << " " << s.wrong << " " << s.errors << " " << s.mean_hops() << "\n";
    for (std::size_t node = 0; node < sim.node_count(); ++node) out << sim.dump(node);
    return out.str();
}

// (d) The same seed gives the same run; another seed a different one.
TEST(SimTest, SameSeedSameRun) {
    const std::string a = run_fingerprint(7);
    const std::string b = run_fingerprint(7);
    EXPECT_EQ(a, b) << "seed 7";
    EXPECT_NE(a, run_fingerprint(8)) << "seeds 7 and 8";
}

// (e) A brief partition into two random halves, then heal: the ring converges again.
TEST(SimTest, HealsAfterABriefPartition) {
    for (std::uint64_t seed : {21, 22, 23, 24, 25}) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        Simulator sim(options_for(seed));
        grow(sim, 60, 50ms);
        expect_converges(sim, 120s);
        std::bernoulli_distribution half(0.5);
        for (std::size_t node : sim.up_nodes()) sim.set_group(node, half(sim.rng()) ? 1 : 0);
        sim.run_for(1500ms);
        EXPECT_GT(sim.messages().partitioned, 0u);
        sim.heal();
        expect_converges(sim, 120s);
        expect_all_invariants(sim);
        expect_always_invariants_held(sim);
        expect_lookups_correct(sim, 500);
    }
}

// (e') A partition far longer than failure detection: each side drops the other and forms a
// ring of its own. After the heal the rings merge into one (ring merging probes the
// departed neighbours), and lookups are right again.
TEST(SimTest, MergesTheRingsAfterALongPartition) {
    for (std::uint64_t seed : {31, 32, 33}) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        Simulator sim(options_for(seed));
        grow(sim, 60, 50ms);
        expect_converges(sim, 120s);
        std::bernoulli_distribution half(0.5);
        for (std::size_t node : sim.up_nodes()) sim.set_group(node, half(sim.rng()) ? 1 : 0);
        sim.run_for(30s);  // both sides settle into rings of their own
        sim.heal();
        expect_converges(sim, 120s);
        expect_all_invariants(sim);
        // Two rings while partitioned are the partition's doing; the other always-invariants
        // (at least one ring, ordered lists, no duplicates) must hold throughout.
        const InvariantTally& t = sim.invariant_tally();
        EXPECT_GT(t.count(Invariant::at_most_one_ring), 0u) << "the sides never split";
        EXPECT_EQ(t.always_total() - t.count(Invariant::at_most_one_ring), 0u) << tally_text(t);
        expect_lookups_correct(sim, 500);
    }
}

// A single process cut off for long (a cut link): its vnodes form a ring of their own, and
// rejoin the others after the link is back.
TEST(SimTest, ACutOffProcessRejoinsAfterTheLinkIsBack) {
    const std::uint64_t seed = 61;
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimulatorOptions o = options_for(seed);
    o.vnodes = 4;
    Simulator sim(o);
    grow(sim, 10, 100ms);
    expect_converges(sim, 120s);
    sim.set_group(3, 1);
    sim.run_for(20s);
    sim.heal();
    expect_converges(sim, 120s);
    expect_all_invariants(sim);
    expect_lookups_correct(sim, 200);
}

// The same with 8 vnodes per process and a cut of 18 s (the chaos tool's long cuts): the
// two sides merge partly, and lookups started on the other side can be answered by the cut-off
// process's own vnodes. Probing stopped at the first such answer once, and runs of its
// vnodes stayed in a ring of their own (6 of these 12 cases, and on real hosts).
TEST(SimTest, ACutOffProcessWithEightVnodesRejoinsAfterALongCut) {
    for (std::uint64_t seed : {71, 72, 73, 74}) {
        for (std::size_t cut : {1, 4, 6}) {
            SCOPED_TRACE("seed " + std::to_string(seed) + ", process " + std::to_string(cut));
            SimulatorOptions o = options_for(seed);
            o.vnodes = 8;
            Simulator sim(o);
            grow(sim, 8, 100ms);
            expect_converges(sim, 120s);
            sim.set_group(cut, 1);
            sim.run_for(18s);
            sim.heal();
            expect_converges(sim, 60s);
            expect_lookups_correct(sim, 100);
        }
    }
}

// A process killed and started again on its data dir comes back with the same ids and
// address while the others may still name its earlier life. Every vnode of it must be a
// member again within a few stabilize periods and the ring ideal. Before the fix an idle
// vnode answered Ping, so a successor whose predecessor was the vnode's earlier life kept
// it (the ping "succeeded") and the restarted process could stay out of the ring: chordd
// took over 30 s in 2 of 20 runs of chord_cluster_script, and this test (vnodes joining as
// chordd's do, the first through a member and the rest through their own process) failed
// 1 of its 24 cases (seed 81, down 1.5 s).
TEST(SimTest, AProcessRestartedRightAfterACrashRejoinsWithItsIds) {
    for (std::uint64_t seed : {81, 82, 83, 84, 85, 86, 87, 88}) {
        for (Duration down : {Duration(200ms), Duration(1500ms), Duration(4s)}) {
            SCOPED_TRACE("seed " + std::to_string(seed) + ", down " +
                         std::to_string(std::chrono::duration<double>(down).count()) + " s");
            SimulatorOptions o = options_for(seed);
            o.vnodes = 8;
            o.join_through_own_process = true;
            Simulator sim(o);
            grow(sim, 6, 100ms);
            expect_converges(sim, 120s);
            const std::size_t victim = 1 + static_cast<std::size_t>(seed % 5);
            sim.crash(victim);
            sim.run_for(down);
            sim.restart(victim);
            const auto all_members = [&] {
                for (std::size_t v = 0; v < o.vnodes; ++v) {
                    if (sim.ring_state(victim, v).state != chord::MemberState::member) {
                        return false;
                    }
                }
                return true;
            };
            const chord::Time deadline = sim.now() + 10s;
            while (!all_members() && sim.now() < deadline) sim.run_for(100ms);
            EXPECT_TRUE(all_members()) << sim.dump(victim);
            expect_converges(sim, 60s);
            expect_lookups_correct(sim, 100);
        }
    }
}

// A leave whose neighbours do not answer outlasts a stabilize period; the leaving vnode must
// still let simulated time pass (its next deadline must move past now after each tick).
TEST(SimTest, LeaveWhileNeighboursAreUnreachableDoesNotSpin) {
    const std::uint64_t seed = 51;
    SCOPED_TRACE("seed " + std::to_string(seed));
    Simulator sim(options_for(seed));
    grow(sim, 5, 50ms);
    expect_converges(sim, 60s);
    sim.set_group(2, 1);  // cut off from everyone: its Leave RPCs time out and retry
    sim.leave(2);
    EXPECT_NO_THROW(sim.run_for(5s)) << sim.dump(2);
    EXPECT_FALSE(sim.is_up(2)) << "leave() is bounded by leave_timeout\n" << sim.dump(2);
    sim.heal();
    expect_converges(sim, 60s);
}

// Several vnodes per process: routing by vnode id and bootstrap by address.
TEST(SimTest, VnodesPerProcessFormOneRing) {
    const std::uint64_t seed = 41;
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimulatorOptions o = options_for(seed);
    o.vnodes = 4;
    o.random_ids = false;
    Simulator sim(o);
    grow(sim, 30, 100ms);
    expect_converges(sim, 120s);
    EXPECT_EQ(sim.live_ids().size(), 120u);
    expect_all_invariants(sim);
    expect_always_invariants_held(sim);
    expect_lookups_correct(sim, 1000);
    sim.crash(3);
    sim.leave(7);
    expect_converges(sim, 120s);
    EXPECT_EQ(sim.live_ids().size(), 112u);
    expect_lookups_correct(sim, 1000);
}

// The process whose vnodes form the longest run of ring neighbours (consecutive on the ring),
// and that run's length.
std::pair<std::size_t, std::size_t> process_with_longest_run(const Simulator& sim) {
    std::vector<std::pair<chord::NodeId, std::size_t>> ring;  // (id, process), by id
    for (std::size_t node : sim.member_nodes()) {
        for (std::size_t v = 0; v < sim.options().vnodes; ++v) {
            ring.emplace_back(sim.ring_state(node, v).self.id, node);
        }
    }
    std::sort(ring.begin(), ring.end());
    std::pair<std::size_t, std::size_t> best{0, 0};
    const std::size_t n = ring.size();
    for (std::size_t start = 0; start < n; ++start) {
        // Only runs that start here: the previous vnode belongs to another process.
        if (ring[(start + n - 1) % n].second == ring[start].second) continue;
        std::size_t length = 1;
        while (length < n && ring[(start + length) % n].second == ring[start].second) ++length;
        if (length > best.second) best = {ring[start].second, length};
    }
    return best;
}

// A graceful leave of a process two or more of whose vnodes are ring neighbours (8 processes
// of 8 vnodes, as in production) heals at once: each neighbour outside the process learns the
// first successor that is not leaving, so half a stabilize period after the process went down
// no remaining vnode names a departed one, the ring is ideal, and every lookup started from
// then on is right — where failure detection takes 3 stabilize attempts (~2.1 s). Before the
// fix the vnode before a run was handed the run's second vnode as its successor (itself
// leaving) and kept it until failure detection dropped it; lookups meanwhile named it.
//
// Each link keeps its messages in order (fixed latency), as one UDP path nearly always does:
// with the default latency spread a stabilize answer can overtake a newer pushed list of the
// same neighbour, and any change (join, failure or leave) then takes up to a stabilize period
// longer to settle; the churn tests cover that network.
TEST(SimTest, LeaveOfRingAdjacentVnodesHealsWithoutFailureDetection) {
    for (std::uint64_t seed : {71, 72, 73, 74, 75, 76}) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        SimulatorOptions o = options_for(seed);
        o.vnodes = 8;
        o.network.latency_min = o.network.latency_max = 20ms;
        Simulator sim(o);
        grow(sim, 8, 100ms);
        expect_converges(sim, 120s);
        sim.run_for(5s);  // fingers filled
        const auto [leaver, run] = process_with_longest_run(sim);
        ASSERT_GE(run, 2u) << "the seed must give some process ring-adjacent vnodes";
        std::vector<chord::NodeId> departed;
        for (std::size_t v = 0; v < o.vnodes; ++v) {
            departed.push_back(sim.ring_state(leaver, v).self.id);
        }
        auto is_departed = [&](const chord::NodeId& id) {
            return std::find(departed.begin(), departed.end(), id) != departed.end();
        };

        // Lookups from random remaining processes, 10 every 20 ms from the leave on.
        struct Answer {
            Time issued;
            chord::NodeId target;
            Result<chord::LookupResult> result{Errc::timed_out};
        };
        auto answers = std::make_shared<std::vector<Answer>>();
        std::size_t issued = 0;
        auto issue_lookups = [&] {
            const std::vector<std::size_t> members = sim.member_nodes();
            std::uniform_int_distribution<std::size_t> pick(0, members.size() - 1);
            std::uniform_int_distribution<std::size_t> pick_vnode(0, o.vnodes - 1);
            for (int i = 0; i < 10; ++i) {
                const std::size_t node = members[pick(sim.rng())];
                const chord::NodeId target = sim.random_id();
                const Time issued_at = sim.now();
                ++issued;
                sim.lookup(
                    node, target,
                    [answers, issued_at, target](Time, Result<chord::LookupResult> r) {
                        answers->push_back({issued_at, target, std::move(r)});
                    },
                    pick_vnode(sim.rng()));
            }
        };
        auto run_with_lookups = [&](Time until) {
            while (sim.now() < until) {
                issue_lookups();
                sim.run_for(20ms);
            }
        };

        const Time left_at = sim.now();
        sim.leave(leaver);
        while (sim.is_up(leaver) && sim.now() < left_at + 5s) run_with_lookups(sim.now() + 20ms);
        ASSERT_FALSE(sim.is_up(leaver)) << "the leave was not acknowledged\n" << sim.dump(leaver);
        const Time down_at = sim.now();
        const Time healed_by = down_at + o.protocol.stabilize_interval / 2;
        run_with_lookups(healed_by);

        // No remaining vnode names a departed one, and the ring is ideal.
        std::vector<std::string> stale;
        for (const chord::RingState* s : sim.states()) {
            for (const chord::Peer& p : s->successors) {
                if (is_departed(p.id)) stale.push_back(describe(s->self) + " -> " + describe(p));
            }
            if (s->predecessor && is_departed(s->predecessor->id)) {
                stale.push_back(describe(s->self) + " pred " + describe(*s->predecessor));
            }
        }
        EXPECT_TRUE(stale.empty())
            << "a run of " << run << " vnodes of n" << leaver << " left; still named "
            << std::chrono::duration<double>(sim.now() - down_at).count()
            << " s after it went down:\n"
            << lines(stale);
        const auto violations = sim.ideal_violations(20);
        EXPECT_TRUE(violations.empty()) << lines(violations) << dump_named(sim, violations);

        // Lookups go on for a second; every one started since `healed_by` is right, and none
        // failed at any time.
        const Oracle oracle = sim.oracle();
        run_with_lookups(sim.now() + 1s);
        sim.run_for(10s);  // every lookup finishes
        ASSERT_EQ(answers->size(), issued) << "lookups never finished";
        std::size_t errors = 0;
        std::vector<std::string> wrong;
        for (const Answer& a : *answers) {
            if (!a.result) {
                ++errors;
                continue;
            }
            if (a.issued < healed_by) continue;
            const std::string why = check_lookup(oracle, a.target, *a.result);
            if (!why.empty() && wrong.size() < 10) wrong.push_back(why);
        }
        EXPECT_EQ(errors, 0u) << "of " << issued << " lookups";
        EXPECT_TRUE(wrong.empty()) << lines(wrong);
    }
}

}  // namespace
}  // namespace chordkv::sim
