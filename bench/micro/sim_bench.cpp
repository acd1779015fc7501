// Micro-benchmarks of lookups on a converged simulated ring (tests/sim/simulator.hpp): the
// CPU cost of one iterative lookup through chord::Protocol, message by message, on the
// simulated network.
//
// The ring (1000 processes of one vnode, seed 1, no loss) is grown, converged and given time to
// fill its finger tables once per process, on first use, outside the timing. Each iteration
// then issues a batch of lookups of random targets from random members at the same instant and
// runs the simulation until all of them have answered. The simulation keeps running the ring's
// maintenance meanwhile (stabilize every 500 ms, a finger every 250 ms, on every vnode), so
// per-lookup time includes a share of it: small for a batch of 1000 lookups, most of it for a
// batch of one. BM_SimMaintenance measures that background cost alone.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/sim/checkers.hpp"
#include "tests/sim/simulator.hpp"

namespace chordkv::sim {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kNodes = 1000;
constexpr std::uint64_t kSeed = 1;

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "sim_bench (seed %llu): %s\n", static_cast<unsigned long long>(kSeed),
                 what.c_str());
    std::exit(1);
}

// Joins in waves, each as large as the ring already is, spread over one stabilize interval;
// the next wave starts when the last one's joins are done. Much faster to converge than joining
// one node at a time through a small ring.
void grow(Simulator& sim, std::size_t nodes) {
    const Duration interval = sim.options().protocol.stabilize_interval;
    sim.create_node();
    std::size_t members = 1;
    while (sim.node_count() < nodes) {
        const std::size_t wave = std::min(nodes - sim.node_count(), members);
        const Time start = sim.now();
        for (std::size_t i = 0; i < wave; ++i) {
            sim.run_until(start + interval * static_cast<std::int64_t>(i) /
                                      static_cast<std::int64_t>(wave));
            sim.join_node();
        }
        const Time wave_deadline = sim.now() + 60 * interval;
        do {
            sim.run_for(interval / 2);
            members = sim.member_nodes().size();
        } while (members < sim.up_nodes().size() && sim.now() < wave_deadline);
    }
}

// The converged ring shared by the benchmarks, and the oracle that judges its lookups.
struct Ring {
    Simulator sim;
    Oracle oracle;
    std::vector<std::size_t> members;
    double build_seconds = 0;  // wall time spent growing and converging, for the log

    static Ring& get() {
        static Ring ring;
        return ring;
    }

private:
    Ring() : sim(options()) {
        const auto started = std::chrono::steady_clock::now();
        grow(sim, kNodes);
        if (!sim.run_until_converged(sim.now() + 3600s)) die("the ring did not converge");
        sim.run_for(60s);  // fix_fingers refreshes one finger per 250 ms: let it fill the tables
        if (!sim.is_ideal()) die("the ring left the ideal state");
        oracle = sim.oracle();
        members = sim.member_nodes();
        build_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::fprintf(stderr, "sim_bench: %zu-node ring converged in %.1f s wall\n", kNodes,
                     build_seconds);
    }

    static SimulatorOptions options() {
        SimulatorOptions o;
        o.seed = kSeed;
        return o;
    }
};

// What a batch of lookups came to; shared with the callbacks.
struct BatchTally {
    std::size_t completed = 0;
    std::size_t wrong = 0;  // failed, or named an owner other than the oracle's
    std::uint64_t hops = 0;
};

void BM_SimLookup(benchmark::State& state) {
    Ring& ring = Ring::get();
    Simulator& sim = ring.sim;
    const auto batch = static_cast<std::size_t>(state.range(0));
    std::uniform_int_distribution<std::size_t> pick(0, ring.members.size() - 1);
    auto tally = std::make_shared<BatchTally>();
    const std::size_t events_before = sim.events_processed();
    const Time sim_before = sim.now();
    // Fine enough not to overshoot much past the last answer (latency is 5..50 ms per hop).
    constexpr Duration kStep = 5ms;
    for (auto _ : state) {
        const std::size_t target_completed = tally->completed + batch;
        for (std::size_t i = 0; i < batch; ++i) {
            const chord::NodeId target = sim.random_id();
            sim.lookup(ring.members[pick(sim.rng())], target,
                       [tally, target, &oracle = ring.oracle](Time, Result<chord::LookupResult> r) {
                           ++tally->completed;
                           if (!r || !check_lookup(oracle, target, *r).empty()) {
                               ++tally->wrong;
                               return;
                           }
                           tally->hops += static_cast<std::uint64_t>(r->hops);
                       });
        }
        const Time deadline = sim.now() + 60s;
        while (tally->completed < target_completed && sim.now() < deadline) {
            sim.run_for(kStep);
        }
        if (tally->completed < target_completed) {
            state.SkipWithError("lookups did not complete within 60 s simulated");
            break;
        }
    }
    if (tally->wrong > 0) state.SkipWithError("some lookups failed or were wrong");
    const auto lookups = static_cast<double>(tally->completed);
    state.SetItemsProcessed(static_cast<std::int64_t>(tally->completed));
    state.counters["hops"] = static_cast<double>(tally->hops) / lookups;
    state.counters["events"] =
        static_cast<double>(sim.events_processed() - events_before) / lookups;
    state.counters["sim_ms"] =
        std::chrono::duration<double, std::milli>(sim.now() - sim_before).count() / lookups;
}
BENCHMARK(BM_SimLookup)->ArgName("batch")->Arg(1)->Arg(1000)->Unit(benchmark::kMicrosecond);

// The ring doing nothing but maintenance, 100 ms of simulated time per iteration.
// Items: simulated events (message deliveries and timer wake-ups).
void BM_SimMaintenance(benchmark::State& state) {
    Simulator& sim = Ring::get().sim;
    const std::size_t events_before = sim.events_processed();
    for (auto _ : state) {
        sim.run_for(100ms);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(sim.events_processed() - events_before));
}
BENCHMARK(BM_SimMaintenance)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace chordkv::sim
