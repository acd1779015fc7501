// Micro-benchmarks of the RocksDB key store (storage/key_store.hpp): put, get, apply and
// apply_batch of 100-byte values at random keys of a 100k-key space, and scan / digest of an
// arc. Default KeyStoreOptions apart from the record cache size (no fsync per write: the WAL
// survives a process crash only).
//
// One store per record cache size, in a fresh temporary directory, serves every benchmark of
// the process that asks for that size: it is opened and filled with all 100k keys on first use
// (not timed) and deleted at exit. Writes keep overwriting the same keys, so the store stays at
// 100k live keys; RocksDB flushes and compacts in the background as it would in a node.
//
// The point reads and writes run with `cache_mb` 0 (KeyStoreOptions::cache_bytes = 0: every
// read goes to RocksDB) and 64 (the default record cache, which holds the whole 100k-key store
// once warm), back to back, and report the cache's hit rate over the timed loop.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "chord/node_id.hpp"
#include "storage/key_store.hpp"
#include "storage/record.hpp"

namespace chordkv::storage {
namespace {

constexpr std::size_t kKeySpace = 100000;
constexpr std::size_t kValueBytes = 100;
// Random key indices per benchmark: a power of two, so `i & kInputMask` cycles through them.
constexpr std::size_t kInputs = std::size_t{1} << 16;
constexpr std::size_t kInputMask = kInputs - 1;

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "key_store_bench: %s\n", what.c_str());
    std::exit(1);
}

// The record cache sizes the point benchmarks compare, in MiB: off, and the default.
constexpr std::int64_t kCacheOffMb = 0;
constexpr std::int64_t kCacheDefaultMb = 64;

// The shared store: a temporary directory holding kKeySpace keys "user:<n>".
class BenchStore {
public:
    // The store with a record cache of `cache_mb` MiB: kCacheOffMb or kCacheDefaultMb. Each is
    // a function-local static constructed by opening its store, so it is destroyed (and its
    // store closed) before the statics RocksDB creates while opening.
    static BenchStore& get(std::int64_t cache_mb = kCacheDefaultMb) {
        if (cache_mb == kCacheOffMb) {
            static BenchStore off(0);
            return off;
        }
        if (cache_mb != kCacheDefaultMb) die("no bench store with a cache of that size");
        static BenchStore cached(static_cast<std::size_t>(kCacheDefaultMb) << 20);
        return cached;
    }

    KeyStore& store() { return *store_; }
    const std::vector<std::string>& keys() const { return keys_; }
    const std::string& value() const { return value_; }
    // A version newer than every one written so far.
    std::uint64_t next_version() { return ++version_; }

    // Key indices in [0, kKeySpace), uniformly random, the same for every run of `seed`.
    static std::vector<std::size_t> random_indices(std::uint64_t seed) {
        std::mt19937_64 rng(seed);
        std::uniform_int_distribution<std::size_t> pick(0, kKeySpace - 1);
        std::vector<std::size_t> out(kInputs);
        for (auto& i : out) i = pick(rng);
        return out;
    }

    BenchStore(const BenchStore&) = delete;
    BenchStore& operator=(const BenchStore&) = delete;

    ~BenchStore() {
        store_.reset();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

private:
    explicit BenchStore(std::size_t cache_bytes) : value_(kValueBytes, 'v') {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "chordkv-bench-XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr) die("cannot create a temporary directory");
        dir_ = pattern;
        KeyStoreOptions options;
        options.cache_bytes = cache_bytes;
        auto opened = KeyStore::open(dir_ + "/db", options);
        if (!opened) die(opened.error().message());
        store_ = std::move(*opened);

        keys_.reserve(kKeySpace);
        for (std::size_t i = 0; i < kKeySpace; ++i) keys_.push_back("user:" + std::to_string(i));
        // Fill in batches of 1000 keys: one WAL record each.
        WriteBatch batch;
        for (std::size_t i = 0; i < kKeySpace; ++i) {
            batch.put(keys_[i], value_, next_version());
            if (batch.size() == 1000 || i + 1 == kKeySpace) {
                if (Status written = store_->write(batch); !written) {
                    die(written.error().message());
                }
                batch.clear();
            }
        }
    }

    std::string dir_;
    std::unique_ptr<KeyStore> store_;
    std::vector<std::string> keys_;
    std::string value_;
    std::uint64_t version_ = 0;
};

// Counts the record cache's hits and misses over a benchmark's timed loop.
class CacheHitRate {
public:
    explicit CacheHitRate(const KeyStore& store) : store_(store), before_(store.cache_stats()) {}
    // Sets the "cache_hit_rate" counter (0 when nothing was looked up, as with the cache off).
    void report(benchmark::State& state) const {
        const KeyStoreCacheStats after = store_.cache_stats();
        const auto hits = static_cast<double>(after.hits - before_.hits);
        const auto misses = static_cast<double>(after.misses - before_.misses);
        state.counters["cache_hit_rate"] = hits + misses > 0 ? hits / (hits + misses) : 0.0;
    }

private:
    const KeyStore& store_;
    KeyStoreCacheStats before_;
};

// The point benchmarks' argument: the record cache size in MiB.
void cache_sizes(benchmark::internal::Benchmark* bench) {
    bench->ArgName("cache_mb")->Arg(kCacheOffMb)->Arg(kCacheDefaultMb);
}

void BM_KeyStorePut(benchmark::State& state) {
    BenchStore& bench = BenchStore::get(state.range(0));
    const CacheHitRate hit_rate(bench.store());
    const std::vector<std::size_t> picks = BenchStore::random_indices(1);
    std::size_t i = 0;
    for (auto _ : state) {
        Status put = bench.store().put(bench.keys()[picks[i++ & kInputMask]], bench.value(),
                                       bench.next_version());
        if (!put) {
            state.SkipWithError(put.error().message().c_str());
            break;
        }
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kValueBytes));
    hit_rate.report(state);
}
BENCHMARK(BM_KeyStorePut)->Apply(cache_sizes);

void BM_KeyStoreGet(benchmark::State& state) {
    BenchStore& bench = BenchStore::get(state.range(0));
    const CacheHitRate hit_rate(bench.store());
    const std::vector<std::size_t> picks = BenchStore::random_indices(2);
    std::size_t i = 0;
    for (auto _ : state) {
        Result<std::string> value = bench.store().get(bench.keys()[picks[i++ & kInputMask]]);
        if (!value) {
            state.SkipWithError(value.error().message().c_str());
            break;
        }
        benchmark::DoNotOptimize(value->data());
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kValueBytes));
    hit_rate.report(state);
}
BENCHMARK(BM_KeyStoreGet)->Apply(cache_sizes);

// A key that was never written: the Bloom filters and memtable answer (or the cache's "known
// absent" entry), then not_found.
void BM_KeyStoreGetMissing(benchmark::State& state) {
    BenchStore& bench = BenchStore::get(state.range(0));
    const std::vector<std::size_t> picks = BenchStore::random_indices(3);
    std::vector<std::string> absent;
    absent.reserve(kInputs);
    for (std::size_t pick : picks) absent.push_back("absent:" + std::to_string(pick));
    const CacheHitRate hit_rate(bench.store());
    std::size_t i = 0;
    for (auto _ : state) {
        Result<std::string> value = bench.store().get(absent[i++ & kInputMask]);
        if (value || !(value.error() == Errc::not_found)) {
            state.SkipWithError("an absent key was found or failed otherwise");
            break;
        }
        benchmark::DoNotOptimize(value);
    }
    state.SetItemsProcessed(state.iterations());
    hit_rate.report(state);
}
BENCHMARK(BM_KeyStoreGetMissing)->Apply(cache_sizes);

// Replication's write: a newer version, so every apply reads, compares and writes.
void BM_KeyStoreApplyNewer(benchmark::State& state) {
    BenchStore& bench = BenchStore::get(state.range(0));
    const CacheHitRate hit_rate(bench.store());
    const std::vector<std::size_t> picks = BenchStore::random_indices(4);
    Record record{0, false, bench.value()};
    std::size_t i = 0;
    for (auto _ : state) {
        record.version = bench.next_version();
        Result<bool> applied = bench.store().apply(bench.keys()[picks[i++ & kInputMask]], record);
        if (!applied || !*applied) {
            state.SkipWithError("apply of a newer version did not write");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kValueBytes));
    hit_rate.report(state);
}
BENCHMARK(BM_KeyStoreApplyNewer)->Apply(cache_sizes);

// A repeated or stale replica write: read and compare, nothing written.
void BM_KeyStoreApplyStale(benchmark::State& state) {
    BenchStore& bench = BenchStore::get(state.range(0));
    const CacheHitRate hit_rate(bench.store());
    const std::vector<std::size_t> picks = BenchStore::random_indices(5);
    const Record record{1, false, bench.value()};
    std::size_t i = 0;
    for (auto _ : state) {
        Result<bool> applied = bench.store().apply(bench.keys()[picks[i++ & kInputMask]], record);
        if (!applied || *applied) {
            state.SkipWithError("apply of a stale version wrote");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations());
    hit_rate.report(state);
}
BENCHMARK(BM_KeyStoreApplyStale)->Apply(cache_sizes);

// Repair and handoff: apply_batch of `entries` newer records. Items: entries.
void BM_KeyStoreApplyBatch(benchmark::State& state) {
    BenchStore& bench = BenchStore::get(state.range(1));
    const CacheHitRate hit_rate(bench.store());
    const std::vector<std::size_t> picks = BenchStore::random_indices(6);
    const auto batch_size = static_cast<std::size_t>(state.range(0));
    std::size_t i = 0;
    std::vector<Entry> entries(batch_size);
    for (auto _ : state) {
        // Refilling the batch copies batch_size keys and values; part of what a receiver does
        // when it turns a decoded message into entries.
        for (Entry& entry : entries) {
            const std::string& key = bench.keys()[picks[i++ & kInputMask]];
            entry.key = key;
            entry.key_id = chord::NodeId::hash(key);
            entry.record = Record{bench.next_version(), false, bench.value()};
        }
        Result<std::size_t> applied = bench.store().apply_batch(entries);
        if (!applied) {
            state.SkipWithError(applied.error().message().c_str());
            break;
        }
        benchmark::DoNotOptimize(*applied);
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
    state.SetBytesProcessed(state.iterations() * state.range(0) *
                            static_cast<std::int64_t>(kValueBytes));
    hit_rate.report(state);
}
BENCHMARK(BM_KeyStoreApplyBatch)
    ->ArgNames({"entries", "cache_mb"})
    ->Args({100, kCacheOffMb})
    ->Args({100, kCacheDefaultMb});

// Arcs of 1/128 of the ring (about 780 of the 100k keys) starting at random points.
std::vector<std::pair<chord::NodeId, chord::NodeId>> random_arcs(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::pair<chord::NodeId, chord::NodeId>> arcs;
    for (std::size_t i = 0; i < 256; ++i) {
        chord::NodeId::Bytes bytes;
        for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
        const chord::NodeId from(bytes);
        arcs.emplace_back(from, from.add_pow2(chord::NodeId::kBits - 7));
    }
    return arcs;
}

// Handoff's read: one scan batch covering a whole arc. Items: entries read.
void BM_KeyStoreScanArc(benchmark::State& state) {
    BenchStore& bench = BenchStore::get();
    const auto arcs = random_arcs(7);
    std::size_t i = 0;
    std::int64_t entries = 0;
    for (auto _ : state) {
        const auto& [from, to] = arcs[i++ % arcs.size()];
        Result<ScanBatch> batch = bench.store().scan(from, to, kKeySpace, std::nullopt);
        if (!batch || batch->resume_after) {
            state.SkipWithError("the arc did not fit one scan batch");
            break;
        }
        entries += static_cast<std::int64_t>(batch->entries.size());
        benchmark::DoNotOptimize(batch->entries.data());
    }
    state.SetItemsProcessed(entries);
    state.SetBytesProcessed(entries * static_cast<std::int64_t>(kValueBytes));
    state.counters["keys_per_arc"] =
        static_cast<double>(entries) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_KeyStoreScanArc)->Unit(benchmark::kMicrosecond);

// Anti-entropy's summary of the same arcs, in 64 buckets. Items: entries hashed.
void BM_KeyStoreDigestArc(benchmark::State& state) {
    BenchStore& bench = BenchStore::get();
    const auto arcs = random_arcs(8);
    std::size_t i = 0;
    std::int64_t entries = 0;
    for (auto _ : state) {
        const auto& [from, to] = arcs[i++ % arcs.size()];
        Result<ArcDigest> digest = bench.store().digest(from, to, 64);
        if (!digest) {
            state.SkipWithError(digest.error().message().c_str());
            break;
        }
        for (std::uint64_t count : digest->counts) entries += static_cast<std::int64_t>(count);
        benchmark::DoNotOptimize(digest->buckets.data());
    }
    state.SetItemsProcessed(entries);
}
BENCHMARK(BM_KeyStoreDigestArc)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace chordkv::storage
