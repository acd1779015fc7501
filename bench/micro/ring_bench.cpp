// Micro-benchmarks of the ring arithmetic (chord/node_id.hpp) and of HashRing, the local
// consistent-hash ring clients and tools route with (chord/hash_ring.hpp).
//
// Inputs are drawn up front from a seeded RNG and cycled through, so the loops measure the
// code under test, not the RNG, and every run sees the same inputs.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "chord/hash_ring.hpp"
#include "chord/node_id.hpp"

namespace chordkv::chord {
namespace {

// Inputs per benchmark: a power of two, so `i & kInputMask` cycles through them.
constexpr std::size_t kInputs = std::size_t{1} << 14;
constexpr std::size_t kInputMask = kInputs - 1;
// Keys are drawn from this many distinct names, "user:<n>".
constexpr std::uint64_t kKeySpace = 100000;

std::vector<std::string> random_keys(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<std::uint64_t> pick(0, kKeySpace - 1);
    std::vector<std::string> keys;
    keys.reserve(kInputs);
    for (std::size_t i = 0; i < kInputs; ++i) keys.push_back("user:" + std::to_string(pick(rng)));
    return keys;
}

std::vector<NodeId> random_ids(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<NodeId> ids;
    ids.reserve(kInputs);
    for (std::size_t i = 0; i < kInputs; ++i) {
        NodeId::Bytes bytes;
        for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
        ids.emplace_back(bytes);
    }
    return ids;
}

// --- NodeId --------------------------------------------------------------------------------

// SHA-1 of a short key: the id every put and get computes first.
void BM_NodeIdHash(benchmark::State& state) {
    const std::vector<std::string> keys = random_keys(1);
    std::size_t i = 0;
    std::size_t bytes = 0;
    for (auto _ : state) {
        const std::string& key = keys[i++ & kInputMask];
        NodeId id = NodeId::hash(key);
        bytes += key.size();
        benchmark::DoNotOptimize(id);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_NodeIdHash);

// x ∈ (a, b]: the predicate every routing step and arc check evaluates.
void BM_InOpenClosed(benchmark::State& state) {
    const std::vector<NodeId> ids = random_ids(2);
    std::size_t i = 0;
    std::size_t inside = 0;
    for (auto _ : state) {
        const NodeId& x = ids[i & kInputMask];
        const NodeId& a = ids[(i + 1) & kInputMask];
        const NodeId& b = ids[(i + 2) & kInputMask];
        ++i;
        bool in = in_open_closed(x, a, b);
        benchmark::DoNotOptimize(in);
        inside += in ? 1 : 0;
    }
    benchmark::DoNotOptimize(inside);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InOpenClosed);

// id + 2^i: the start of finger i.
void BM_AddPow2(benchmark::State& state) {
    const std::vector<NodeId> ids = random_ids(3);
    std::size_t i = 0;
    for (auto _ : state) {
        NodeId start = ids[i & kInputMask].add_pow2(static_cast<int>(i % NodeId::kBits));
        ++i;
        benchmark::DoNotOptimize(start);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AddPow2);

// Clockwise distance (b - a mod 2^160).
void BM_Distance(benchmark::State& state) {
    const std::vector<NodeId> ids = random_ids(4);
    std::size_t i = 0;
    for (auto _ : state) {
        NodeId d = distance(ids[i & kInputMask], ids[(i + 1) & kInputMask]);
        ++i;
        benchmark::DoNotOptimize(d);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Distance);

// --- HashRing ------------------------------------------------------------------------------
// Arguments: nodes, vnodes (points) per node. 10 × 100 and 100 × 8 are both about 1000 points:
// few big nodes against many small ones.

HashRing make_ring(std::int64_t nodes, std::int64_t vnodes) {
    HashRing ring;
    for (std::int64_t n = 0; n < nodes; ++n) {
        Status added =
            ring.add("10.0." + std::to_string(n / 256) + "." + std::to_string(n % 256) + ":7400",
                     static_cast<std::uint32_t>(vnodes));
        if (!added) throw std::runtime_error(added.error().message());
    }
    return ring;
}

void ring_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"nodes", "vnodes"})->Args({10, 100})->Args({100, 8});
}

// owner(key): SHA-1 of the key plus a binary search over the points.
void BM_HashRingOwner(benchmark::State& state) {
    const HashRing ring = make_ring(state.range(0), state.range(1));
    const std::vector<std::string> keys = random_keys(5);
    std::size_t i = 0;
    for (auto _ : state) {
        Result<std::string> owner = ring.owner(keys[i++ & kInputMask]);
        benchmark::DoNotOptimize(owner);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HashRingOwner)->Apply(ring_args);

// owner_of(id): the binary search alone (the id already hashed).
void BM_HashRingOwnerOf(benchmark::State& state) {
    const HashRing ring = make_ring(state.range(0), state.range(1));
    const std::vector<NodeId> ids = random_ids(6);
    std::size_t i = 0;
    for (auto _ : state) {
        Result<std::string> owner = ring.owner_of(ids[i++ & kInputMask]);
        benchmark::DoNotOptimize(owner);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HashRingOwnerOf)->Apply(ring_args);

// preference_list(key, 3): the owner and two replica nodes.
void BM_HashRingPreferenceList3(benchmark::State& state) {
    const HashRing ring = make_ring(state.range(0), state.range(1));
    const std::vector<std::string> keys = random_keys(7);
    std::size_t i = 0;
    for (auto _ : state) {
        Result<std::vector<std::string>> nodes = ring.preference_list(keys[i++ & kInputMask], 3);
        benchmark::DoNotOptimize(nodes);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HashRingPreferenceList3)->Apply(ring_args);

// Building the whole ring node by node (add re-sorts every point each time). Items: points.
void BM_HashRingBuild(benchmark::State& state) {
    for (auto _ : state) {
        HashRing ring = make_ring(state.range(0), state.range(1));
        benchmark::DoNotOptimize(ring.points().data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * state.range(0) * state.range(1));
}
BENCHMARK(BM_HashRingBuild)->Apply(ring_args)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace chordkv::chord
