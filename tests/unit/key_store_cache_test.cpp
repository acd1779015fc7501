// Unit tests of KeyStore's record cache (KeyStoreOptions::cache_bytes). RecordCacheTest steps
// through the cache's coherence protocol (storage/record_cache.hpp) one call at a time, each
// interleaving a racing reader and writer could produce. KeyStoreCacheTest runs real RocksDB
// stores in a temporary directory, with the same store without the cache as the oracle: a
// random sequence of every kind of data write must read back identically through a small,
// always-evicting cache and through none.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "chord/node_id.hpp"
#include "storage/key_store.hpp"
#include "storage/record.hpp"
#include "storage/record_cache.hpp"

namespace chordkv::storage {
namespace {

namespace fs = std::filesystem;
using chord::NodeId;

// Small enough that a few hundred keys overflow it (16 shards of 4 KiB), large enough that
// records of up to a few hundred bytes are cached.
constexpr std::size_t kSmallCacheBytes = std::size_t{64} << 10;

KeyStoreOptions with_cache(std::size_t cache_bytes) {
    KeyStoreOptions options;
    options.cache_bytes = cache_bytes;
    return options;
}

std::string describe(const Result<Record>& result) {
    if (!result) return "error '" + result.error().message() + "'";
    const Record& r = *result;
    return "version " + std::to_string(r.version) +
           (r.tombstone ? " tombstone" : " value of " + std::to_string(r.value.size()) + " bytes");
}

// Both reads succeeded with equal records, or failed with the same code.
::testing::AssertionResult same_read(const Result<Record>& cached, const Result<Record>& plain) {
    const bool same = cached.ok() == plain.ok() &&
                      (cached ? *cached == *plain : cached.error().code() == plain.error().code());
    if (same) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "with cache: " << describe(cached) << "; without: " << describe(plain);
}

// --- RecordCache, one protocol step at a time ----------------------------------------------

const Record kOld{1, false, "old"};
const Record kNew{2, false, "new"};

chord::NodeId id_of(std::string_view key) {
    return chord::NodeId::hash(key);
}

RecordCache::Write write_of(std::string_view key, const Record& record, bool allocate) {
    return RecordCache::Write{key,          true,     record.version, record.tombstone,
                              record.value, allocate, id_of(key)};
}

// OpenIndex against a std::map under random inserts, erases and finds, with hashes that
// collide a lot: probe runs are long, cross each other, and wrap past the end of the table,
// which is where backward-shift deletion can go wrong.
struct FewHomes {  // 37 distinct hashes
    std::size_t operator()(std::string_view key) const {
        return std::hash<std::string_view>{}(key) % 37 * 0x9e3779b97f4a7c15ull;
    }
};
struct LastHome {  // every key's home is the last slot: every run wraps
    std::size_t operator()(std::string_view) const { return ~std::size_t{0}; }
};
struct KeyOfPair {
    std::string_view operator()(const std::pair<std::string, int>* p) const { return p->first; }
};

template <class Hash>
void check_open_index_against_a_map(std::uint32_t seed, int keys, int operations) {
    detail::OpenIndex<const std::pair<std::string, int>*, KeyOfPair, Hash> index;
    std::map<std::string, int> oracle;
    std::vector<std::pair<std::string, int>> storage;
    storage.reserve(static_cast<std::size_t>(keys));
    for (int k = 0; k < keys; ++k) storage.emplace_back("k" + std::to_string(k), k);
    std::mt19937 rng(seed);
    for (int op = 0; op < operations; ++op) {
        const auto& entry = storage[rng() % storage.size()];
        const bool present = oracle.count(entry.first) != 0;
        switch (rng() % 3) {
            case 0:
                if (!present) {
                    index.insert(entry.first, &entry);
                    oracle[entry.first] = entry.second;
                }
                break;
            case 1:
                ASSERT_EQ(index.erase(entry.first), present) << entry.first << " op " << op;
                oracle.erase(entry.first);
                break;
            default: {
                auto* found = index.find(entry.first);
                ASSERT_EQ(found != nullptr, present) << entry.first << " op " << op;
                if (found != nullptr) {
                    EXPECT_EQ((*found)->second, entry.second);
                }
            }
        }
        ASSERT_EQ(index.size(), oracle.size());
    }
    for (const auto& entry : storage) {
        ASSERT_EQ(index.find(entry.first) != nullptr, oracle.count(entry.first) != 0)
            << entry.first;
    }
}

TEST(RecordCacheTest, OpenIndexMatchesAMapWithCollidingHashes) {
    check_open_index_against_a_map<FewHomes>(1, 400, 40'000);
    check_open_index_against_a_map<LastHome>(2, 60, 10'000);
    check_open_index_against_a_map<std::hash<std::string_view>>(3, 5'000, 60'000);
}

TEST(RecordCacheTest, FilledRecordsAndAbsentKeysAreHits) {
    RecordCache cache(kSmallCacheBytes);
    auto miss = cache.lookup("key");
    EXPECT_FALSE(miss.hit);
    EXPECT_NE(miss.fill_token, 0u);
    cache.fill("key", id_of("key"), miss.fill_token, &kOld);
    auto hit = cache.lookup("key");
    EXPECT_TRUE(hit.hit);
    EXPECT_EQ(hit.record, kOld);
    EXPECT_EQ(cache.version("key").version, kOld.version);

    cache.fill("absent", id_of("absent"), cache.lookup("absent").fill_token, nullptr);
    hit = cache.lookup("absent");
    EXPECT_TRUE(hit.hit);
    EXPECT_FALSE(hit.record);
    EXPECT_TRUE(cache.version("absent").hit);
    EXPECT_FALSE(cache.version("absent").present);

    const KeyStoreCacheStats stats = cache.stats();
    EXPECT_EQ(stats.hits, 5u);
    EXPECT_EQ(stats.misses, 2u);
    EXPECT_EQ(stats.entries, 2u);
    EXPECT_GT(stats.bytes, 0u);
}

// prefetch() is a hint: over present, "known absent", pending, unknown, repeated and empty
// keys, in more than one round of its batch, it counts nothing and changes no answer. The
// index's hints it uses point where a lookup would look.
TEST(RecordCacheTest, PrefetchChangesNothing) {
    RecordCache cache(std::size_t{8} << 20);
    std::vector<std::string> names;
    for (int i = 0; i < 100; ++i) names.push_back("key" + std::to_string(i));
    for (int i = 0; i < 80; ++i) {
        const Record record{static_cast<std::uint64_t>(i + 1), false, "v" + std::to_string(i)};
        cache.fill(names[i], id_of(names[i]), cache.lookup(names[i]).fill_token,
                   i % 10 == 9 ? nullptr : &record);
    }
    cache.begin_write(names[3]);                                     // pending until end_write
    std::vector<std::string_view> keys(names.begin(), names.end());  // 80 cached, 20 unknown
    keys.push_back(names[5]);
    keys.push_back("");
    const KeyStoreCacheStats before = cache.stats();
    cache.prefetch(keys);
    cache.prefetch({});
    const KeyStoreCacheStats after = cache.stats();
    EXPECT_EQ(after.hits, before.hits);
    EXPECT_EQ(after.misses, before.misses);
    EXPECT_EQ(after.entries, before.entries);
    EXPECT_EQ(after.bytes, before.bytes);
    for (int i = 0; i < 100; ++i) {
        SCOPED_TRACE(names[i]);
        const auto found = cache.lookup(names[i]);
        const bool served = i < 80 && i != 3;
        ASSERT_EQ(found.hit, served);
        if (!served) continue;
        if (i % 10 == 9) {
            EXPECT_FALSE(found.record);
        } else {
            ASSERT_TRUE(found.record);
            EXPECT_EQ(found.record->version, static_cast<std::uint64_t>(i + 1));
            EXPECT_EQ(found.record->value, "v" + std::to_string(i));
        }
    }
    cache.end_write(write_of(names[3], kNew, false), true);

    struct KeyOfString {
        std::string_view operator()(const std::string& s) const { return s; }
    };
    using Index = detail::OpenIndex<std::string, KeyOfString>;
    Index index;
    const auto hash = [](std::string_view key) {
        return static_cast<std::uint64_t>(std::hash<std::string_view>{}(key));
    };
    EXPECT_EQ(index.home_slot(hash("a")), nullptr);
    EXPECT_EQ(index.first_match(hash("a")), nullptr);
    for (const auto& name : names) index.insert(name, name);
    for (const auto& name : names) {
        EXPECT_NE(index.home_slot(hash(name)), nullptr);
        EXPECT_EQ(index.first_match(hash(name)), index.find(name)) << name;
    }
    EXPECT_EQ(index.first_match(hash("not there")), nullptr);
}

// key_id() answers from any entry, "known absent" and pending ones included (a key's id never
// changes), without counting a hit or a miss; a key without an entry has no answer.
TEST(RecordCacheTest, KeyIdsComeFromEveryKindOfEntry) {
    RecordCache cache(kSmallCacheBytes);
    EXPECT_FALSE(cache.key_id("key"));
    cache.fill("key", id_of("key"), cache.lookup("key").fill_token, &kOld);
    cache.fill("absent", id_of("absent"), cache.lookup("absent").fill_token, nullptr);
    const KeyStoreCacheStats before = cache.stats();
    EXPECT_EQ(cache.key_id("key"), id_of("key"));
    EXPECT_EQ(cache.key_id("absent"), id_of("absent"));
    cache.begin_write("key");
    EXPECT_EQ(cache.key_id("key"), id_of("key"));
    const Record grown{2, false, std::string(300, 'g')};  // moves the entry to a new block
    cache.end_write(write_of("key", grown, /*allocate=*/false), /*written=*/true);
    EXPECT_EQ(cache.key_id("key"), id_of("key"));
    EXPECT_FALSE(cache.key_id("other"));
    EXPECT_EQ(cache.stats().hits, before.hits);
    EXPECT_EQ(cache.stats().misses, before.misses);
}

// The reader's Get returned the old record, then a whole write of the key (one that does not
// add keys, like apply_batch) ran before the reader filled: the fill must be dropped, or the
// old record would be served from then on.
TEST(RecordCacheTest, FillAfterARacingWriteIsDropped) {
    RecordCache cache(kSmallCacheBytes);
    const std::uint64_t token = cache.lookup("key").fill_token;
    cache.begin_write("key");
    cache.end_write(write_of("key", kNew, /*allocate=*/false), /*written=*/true);
    cache.fill("key", id_of("key"), token, &kOld);
    EXPECT_FALSE(cache.lookup("key").hit);

    // The same for "absent" read before the key's first write.
    const std::uint64_t absent_token = cache.lookup("new-key").fill_token;
    cache.begin_write("new-key");
    cache.end_write(write_of("new-key", kNew, /*allocate=*/false), /*written=*/true);
    cache.fill("new-key", id_of("new-key"), absent_token, nullptr);
    EXPECT_FALSE(cache.lookup("new-key").hit);

    // A later read, whose Get follows the write, fills.
    const std::uint64_t later = cache.lookup("key").fill_token;
    cache.fill("key", id_of("key"), later, &kNew);
    EXPECT_EQ(cache.lookup("key").record, kNew);
}

// The reader looked up while the write was in flight: its Get may see either record, so it
// gets no token, whatever happens next.
TEST(RecordCacheTest, NoFillWhileAWriteIsInFlight) {
    RecordCache cache(kSmallCacheBytes);
    cache.begin_write("key");
    const std::uint64_t token = cache.lookup("key").fill_token;
    EXPECT_EQ(token, 0u);
    cache.end_write(write_of("key", kNew, /*allocate=*/false), /*written=*/true);
    cache.fill("key", id_of("key"), token, &kOld);
    EXPECT_FALSE(cache.lookup("key").hit);
}

// Between begin_write and end_write RocksDB may already hold the new record: the cached old
// one must not be served, then the new one is.
TEST(RecordCacheTest, EntriesAreNotServedWhileTheirWriteIsInFlight) {
    RecordCache cache(kSmallCacheBytes);
    cache.fill("key", id_of("key"), cache.lookup("key").fill_token, &kOld);
    ASSERT_TRUE(cache.lookup("key").hit);
    cache.begin_write("key");
    EXPECT_FALSE(cache.lookup("key").hit);
    EXPECT_FALSE(cache.version("key").hit);
    cache.end_write(write_of("key", kNew, /*allocate=*/false), /*written=*/true);
    EXPECT_EQ(cache.lookup("key").record, kNew);

    // A removal leaves "known absent".
    cache.begin_write("key");
    cache.end_write(RecordCache::Write{"key", /*present=*/false, 0, false, {}, false, {}}, true);
    const auto removed = cache.lookup("key");
    EXPECT_TRUE(removed.hit);
    EXPECT_FALSE(removed.record);
}

TEST(RecordCacheTest, FailedWriteDropsTheEntry) {
    RecordCache cache(kSmallCacheBytes);
    cache.fill("key", id_of("key"), cache.lookup("key").fill_token, &kOld);
    cache.begin_write("key");
    cache.end_write(write_of("key", kNew, /*allocate=*/true), /*written=*/false);
    EXPECT_FALSE(cache.lookup("key").hit);
    EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(RecordCacheTest, OnlyAllocatingWritesAddKeys) {
    RecordCache cache(kSmallCacheBytes);
    cache.begin_write("batch");
    cache.end_write(write_of("batch", kNew, /*allocate=*/false), /*written=*/true);
    EXPECT_FALSE(cache.lookup("batch").hit);
    cache.begin_write("single");
    cache.end_write(write_of("single", kNew, /*allocate=*/true), /*written=*/true);
    EXPECT_EQ(cache.lookup("single").record, kNew);
}

// A caller holding the key's stripe fills without a token, even with writes of other keys in
// flight.
TEST(RecordCacheTest, FillLockedNeedsNoToken) {
    RecordCache cache(kSmallCacheBytes);
    cache.begin_write("other");
    cache.fill_locked("key", id_of("key"), kOld);
    EXPECT_EQ(cache.lookup("key").record, kOld);
    cache.end_write(write_of("other", kNew, false), true);
}

// Eviction gives entries read since it last passed them a second chance: a key read between
// fills of many others stays, the others go.
TEST(RecordCacheTest, EvictsUnreadEntriesFirstWithinTheBound) {
    RecordCache cache(kSmallCacheBytes);
    const Record value{1, false, std::string(100, 'v')};
    cache.fill("hot", id_of("hot"), cache.lookup("hot").fill_token, &value);
    for (int i = 0; i < 5000; ++i) {
        const std::string key = "cold-" + std::to_string(i);
        cache.fill(key, id_of(key), cache.lookup(key).fill_token, &value);
        ASSERT_TRUE(cache.lookup("hot").hit) << "after " << i << " fills";
        ASSERT_LE(cache.stats().bytes, kSmallCacheBytes);
    }
    EXPECT_GT(cache.stats().evictions, 4000u);
    EXPECT_FALSE(cache.lookup("cold-0").hit);
}

// A record over 1/8 of a shard's budget (512 bytes of a 64 KiB cache) is not cached, and an
// update that grows an entry past it drops the entry.
TEST(RecordCacheTest, RecordsOverTheEntryLimitAreNotCached) {
    RecordCache cache(kSmallCacheBytes);
    const Record large{3, false, std::string(1024, 'L')};
    cache.fill("key", id_of("key"), cache.lookup("key").fill_token, &large);
    EXPECT_FALSE(cache.lookup("key").hit);
    cache.fill("key", id_of("key"), cache.lookup("key").fill_token, &kOld);
    ASSERT_TRUE(cache.lookup("key").hit);
    cache.begin_write("key");
    cache.end_write(write_of("key", large, /*allocate=*/true), /*written=*/true);
    EXPECT_FALSE(cache.lookup("key").hit);
    EXPECT_EQ(cache.stats().entries, 0u);
    EXPECT_EQ(cache.stats().bytes, 0u);
}

// An entry is one block sized for its value: an update that outgrows the block, or would leave
// most of it unused, moves the entry to a new block in the same place of the list and the
// index; one that fits overwrites the value in place. Every step must read back what was
// written, and the bytes charged must follow the block's size.
TEST(RecordCacheTest, UpdatesThatGrowOrShrinkAValueReadBackAndAreCharged) {
    RecordCache cache(kSmallCacheBytes);
    const Record small{1, false, std::string(10, 's')};
    for (const char* key : {"a", "b", "c"})
        cache.fill(key, id_of(key), cache.lookup(key).fill_token, &small);
    const std::size_t start = cache.stats().bytes;
    auto write = [&](const Record& record) {
        cache.begin_write("b");
        cache.end_write(write_of("b", record, /*allocate=*/false), /*written=*/true);
        EXPECT_EQ(cache.lookup("b").record, record) << record.value.size() << " bytes";
    };
    const Record grown{2, false, std::string(200, 'g')};
    write(grown);  // outgrows its block
    EXPECT_EQ(cache.stats().bytes, start + 190);
    const Record shrunk{3, false, std::string(8, 'h')};
    write(shrunk);  // 200 bytes of room for 8: a smaller block
    EXPECT_EQ(cache.stats().bytes, start - 2);
    const Record medium{4, false, std::string(150, 'm')};
    write(medium);
    const Record fits{5, false, std::string(100, 'f')};
    write(fits);  // 150 bytes of room for 100: in place, charged as before
    EXPECT_EQ(cache.stats().bytes, start + 140);
    const Record tombstone{6, true, ""};
    write(tombstone);  // room for 150, none needed: a smaller block
    EXPECT_EQ(cache.stats().bytes, start - 10);
    EXPECT_EQ(cache.lookup("a").record, small);
    EXPECT_EQ(cache.lookup("c").record, small);
    EXPECT_EQ(cache.stats().entries, 3u);

    // The list is intact: filling past the bound evicts through all of it, b included.
    for (int i = 0; i < 2000; ++i) {
        const std::string key = "cold-" + std::to_string(i);
        cache.fill(key, id_of(key), cache.lookup(key).fill_token, &medium);
        ASSERT_LE(cache.stats().bytes, kSmallCacheBytes);
    }
    EXPECT_FALSE(cache.version("b").hit);
    EXPECT_FALSE(cache.version("a").hit);
    EXPECT_EQ(cache.lookup("cold-1999").record, medium);
}

// --- KeyStore with the cache ---------------------------------------------------------------

class KeyStoreCacheTest : public ::testing::Test {
protected:
    void SetUp() override {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        dir_ = fs::temp_directory_path() /
               ("chordkv_key_store_cache_test_" + std::string(info->name()) + "_" +
                std::to_string(::getpid()) + "_" + std::to_string(std::random_device{}()));
        fs::create_directories(dir_);
    }

    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // The store in directory `name` under dir_ (created on first use).
    std::unique_ptr<KeyStore> open(const std::string& name, std::size_t cache_bytes) {
        auto opened = KeyStore::open((dir_ / name).string(), with_cache(cache_bytes));
        EXPECT_TRUE(opened) << opened.error().message();
        return opened ? std::move(*opened) : nullptr;
    }

    fs::path dir_;
};

// The oracle test: one seeded sequence of 50,000 operations over 2,000 keys — reads, gets,
// put, del, apply of older and newer versions, apply_batch, erase_unchanged, purge_tombstones
// and write batches, some values too large to cache — runs on a store with a 64 KiB cache and
// on one without. After every operation its result and a read of every key it touched must be
// equal, and every 5,000 operations a read of all keys. Half the operations go to 100 hot keys
// so the cache has hits, while the rest keep it evicting.
TEST_F(KeyStoreCacheTest, RandomOperationsReadTheSameWithAndWithoutTheCache) {
    constexpr std::uint64_t kSeed = 20240607;
    constexpr std::size_t kOps = 50000;
    constexpr std::size_t kKeys = 2000;
    constexpr std::size_t kHotKeys = 100;
    constexpr std::size_t kSweepEvery = 5000;

    auto cached = open("cached", kSmallCacheBytes);
    auto plain = open("plain", 0);
    ASSERT_TRUE(cached && plain);

    std::mt19937_64 rng(kSeed);
    auto below = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    auto key_name = [](std::size_t i) { return "key-" + std::to_string(i); };
    auto random_key = [&] { return key_name(below(2) == 0 ? below(kHotKeys) : below(kKeys)); };
    // Versions follow a clock with jitter, so some writes are older than what is stored.
    std::uint64_t clock = 1000;
    auto random_version = [&] {
        clock += 1;
        return clock - below(64);
    };
    // Mostly short values; one in ten over the largest record a 64 KiB cache takes.
    auto random_value = [&](std::uint64_t version) {
        const std::size_t bytes = below(10) == 0 ? 600 + below(1000) : below(150);
        std::string value = std::to_string(version) + ":";
        value.resize(std::max(bytes, value.size()), static_cast<char>('a' + below(26)));
        return value;
    };
    auto random_record = [&] {
        const std::uint64_t version = random_version();
        if (below(5) == 0) return Record{version, true, ""};
        return Record{version, false, random_value(version)};
    };

    std::vector<std::string> touched;
    for (std::size_t op = 0; op < kOps; ++op) {
        touched.clear();
        std::string what;
        const std::size_t kind = below(1000);
        if (kind < 250) {
            what = "read";
            touched.push_back(random_key());
        } else if (kind < 300) {
            what = "get";
            const std::string key = random_key();
            auto a = cached->get(key);
            auto b = plain->get(key);
            ASSERT_EQ(a.ok(), b.ok()) << "op " << op << " get " << key << ", seed " << kSeed;
            if (a) {
                ASSERT_EQ(*a, *b) << "op " << op << " get " << key << ", seed " << kSeed;
            } else {
                ASSERT_EQ(a.error().code(), b.error().code()) << "op " << op << ", seed " << kSeed;
            }
        } else if (kind < 420) {
            what = "put";
            const std::string key = random_key();
            const std::uint64_t version = random_version();
            const std::string value = random_value(version);
            ASSERT_TRUE(cached->put(key, value, version));
            ASSERT_TRUE(plain->put(key, value, version));
            touched.push_back(key);
        } else if (kind < 500) {
            what = "del";
            const std::string key = random_key();
            const std::uint64_t version = random_version();
            ASSERT_TRUE(cached->del(key, version));
            ASSERT_TRUE(plain->del(key, version));
            touched.push_back(key);
        } else if (kind < 700) {
            what = "apply";
            const std::string key = random_key();
            const Record record = random_record();
            auto a = cached->apply(key, record);
            auto b = plain->apply(key, record);
            ASSERT_TRUE(a && b);
            ASSERT_EQ(*a, *b) << "op " << op << " apply " << key << ", seed " << kSeed;
            touched.push_back(key);
        } else if (kind < 780) {
            what = "apply_batch";
            std::vector<Entry> entries;
            const std::size_t n = 1 + below(16);
            for (std::size_t i = 0; i < n; ++i) {
                const std::string key = random_key();  // repeats are allowed
                entries.push_back(Entry{NodeId::hash(key), key, random_record()});
                touched.push_back(key);
            }
            // Half of them cache the keys they write, as a replica's writes do.
            const bool cache_new_keys = below(2) == 0;
            auto a = cached->apply_batch(entries, cache_new_keys);
            auto b = plain->apply_batch(entries, cache_new_keys);
            ASSERT_TRUE(a && b);
            ASSERT_EQ(*a, *b) << "op " << op << " apply_batch, seed " << kSeed;
        } else if (kind < 850) {
            what = "erase_unchanged";
            std::vector<Entry> entries;
            const std::size_t n = 1 + below(8);
            for (std::size_t i = 0; i < n; ++i) {
                const std::string key = random_key();
                // Mostly the stored version (erased), else one that is not (kept).
                auto stored = plain->read(key);
                const std::uint64_t version =
                    stored && below(4) != 0 ? stored->version : random_version();
                entries.push_back(Entry{NodeId::hash(key), key, Record{version, false, ""}});
                touched.push_back(key);
            }
            auto a = cached->erase_unchanged(entries);
            auto b = plain->erase_unchanged(entries);
            ASSERT_TRUE(a && b);
            ASSERT_EQ(*a, *b) << "op " << op << " erase_unchanged, seed " << kSeed;
        } else if (kind < 855) {  // scans the store: rare
            what = "purge_tombstones";
            const std::uint64_t before = clock - below(500);
            const std::size_t keys_max = 1 + below(32);
            auto a = cached->purge_tombstones(before, keys_max);
            auto b = plain->purge_tombstones(before, keys_max);
            ASSERT_TRUE(a && b);
            ASSERT_EQ(*a, *b) << "op " << op << " purge_tombstones, seed " << kSeed;
            // The purged keys are unknown here; reads and sweeps of them follow.
        } else {
            what = "write";
            WriteBatch batch;
            const std::size_t n = 1 + below(8);
            for (std::size_t i = 0; i < n; ++i) {
                // Repeats of a key in one batch: its last operation wins.
                const std::string key =
                    below(4) == 0 && !touched.empty() ? touched.back() : random_key();
                const std::uint64_t version = random_version();
                if (below(4) == 0) {
                    batch.del(key, version);
                } else {
                    batch.put(key, random_value(version), version);
                }
                touched.push_back(key);
            }
            if (below(4) == 0) batch.put_meta("meta-" + std::to_string(below(4)), "m");
            ASSERT_TRUE(cached->write(batch));
            ASSERT_TRUE(plain->write(batch));
        }
        for (const std::string& key : touched) {
            ASSERT_TRUE(same_read(cached->read(key), plain->read(key)))
                << "op " << op << " (" << what << ") key " << key << ", seed " << kSeed;
        }
        if ((op + 1) % kSweepEvery == 0) {
            for (std::size_t i = 0; i < kKeys; ++i) {
                ASSERT_TRUE(same_read(cached->read(key_name(i)), plain->read(key_name(i))))
                    << "sweep after op " << op << " key " << key_name(i) << ", seed " << kSeed;
            }
        }
    }

    // Both stores hold the same data, and the cache really was exercised.
    const NodeId zero;
    EXPECT_EQ(cached->digest(zero, zero, 64).value(), plain->digest(zero, zero, 64).value());
    const KeyStoreCacheStats stats = cached->cache_stats();
    EXPECT_GT(stats.hits, kOps / 10);
    EXPECT_GT(stats.misses, 0u);
    EXPECT_GT(stats.evictions, 0u);
    EXPECT_LE(stats.bytes, kSmallCacheBytes);
    const KeyStoreCacheStats off = plain->cache_stats();
    EXPECT_EQ(off.hits + off.misses + off.evictions + off.entries + off.bytes, 0u);
}

// Filled with far more than cache_bytes, the accounted bytes never exceed the bound, yet the
// cache stays mostly full.
TEST_F(KeyStoreCacheTest, AccountedBytesStayWithinTheBound) {
    constexpr std::size_t kCacheBytes = std::size_t{256} << 10;
    constexpr std::size_t kKeys = 20000;  // about 20 times the cache
    auto store = open("db", kCacheBytes);
    ASSERT_TRUE(store);
    std::mt19937_64 rng(11);
    for (std::size_t i = 0; i < kKeys; ++i) {
        const std::string key = "key-" + std::to_string(i);
        ASSERT_TRUE(store->put(key, std::string(50 + rng() % 200, 'v'), i + 1));
        ASSERT_TRUE(store->read("key-" + std::to_string(rng() % (i + 1))));
        // Known-absent entries count too.
        EXPECT_EQ(store->read("absent-" + std::to_string(i)).error(), Errc::not_found);
        if (i % 1000 == 0) {
            const KeyStoreCacheStats stats = store->cache_stats();
            ASSERT_LE(stats.bytes, kCacheBytes) << "after " << i << " keys";
        }
    }
    const KeyStoreCacheStats stats = store->cache_stats();
    EXPECT_LE(stats.bytes, kCacheBytes);
    EXPECT_GT(stats.bytes, kCacheBytes / 2);
    EXPECT_GT(stats.evictions, kKeys);
    // Each entry is charged at least its key, its value's capacity and fixed bookkeeping.
    EXPECT_GT(stats.entries, 0u);
    EXPECT_GT(stats.bytes / stats.entries, 100u);
}

// A read that misses caches what it found, including "absent"; the next read is a hit.
TEST_F(KeyStoreCacheTest, ReadsFillTheCacheIncludingAbsentKeys) {
    auto store = open("db", kSmallCacheBytes);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->read("nothing").error(), Errc::not_found);
    EXPECT_EQ(store->cache_stats().misses, 1u);
    EXPECT_EQ(store->read("nothing").error(), Errc::not_found);
    EXPECT_EQ(store->get("nothing").error(), Errc::not_found);
    EXPECT_EQ(store->cache_stats().hits, 2u);
    EXPECT_EQ(store->cache_stats().entries, 1u);

    // The first write of a new store is newer than anything stored (the version bound): it
    // needs no read, then caches its record.
    EXPECT_TRUE(store->apply("nothing", Record{5, false, "now"}).value());
    EXPECT_EQ(store->version_reads_skipped(), 1u);
    EXPECT_EQ(store->cache_stats().hits, 2u);
    EXPECT_EQ(store->read("nothing").value(), (Record{5, false, "now"}));
    EXPECT_EQ(store->get("nothing").value(), "now");
    // A stale apply is decided by the cache.
    EXPECT_FALSE(store->apply("nothing", Record{4, false, "older"}).value());
    EXPECT_EQ(store->cache_stats().misses, 1u);

    EXPECT_TRUE(store->del("nothing", 6));
    EXPECT_EQ(store->read("nothing").value(), (Record{6, true, ""}));
    EXPECT_EQ(store->get("nothing").error(), Errc::not_found);
    EXPECT_EQ(store->cache_stats().misses, 1u);
}

// apply_batch() caches the keys it writes only when told to (a replica's writes); by default it
// refreshes keys already cached and leaves the rest to RocksDB, so a handoff does not flush
// the hot keys. An entry's key id is checked against the cached one as against the hash.
TEST_F(KeyStoreCacheTest, ApplyBatchCachesNewKeysOnlyWhenAsked) {
    auto store = open("db", kSmallCacheBytes);
    ASSERT_TRUE(store);
    auto entry = [](const std::string& key, std::uint64_t version) {
        return Entry{NodeId::hash(key), key, Record{version, false, "v" + std::to_string(version)}};
    };
    EXPECT_EQ(store->apply_batch({entry("a", 1), entry("b", 2)}).value(), 2u);
    EXPECT_EQ(store->cache_stats().entries, 0u);
    EXPECT_EQ(store->apply_batch({entry("c", 3), entry("d", 4)}, true).value(), 2u);
    EXPECT_EQ(store->cache_stats().entries, 2u);
    EXPECT_EQ(store->read("c").value(), (Record{3, false, "v3"}));
    EXPECT_EQ(store->read("d").value(), (Record{4, false, "v4"}));
    EXPECT_EQ(store->cache_stats().hits, 2u);
    EXPECT_EQ(store->cache_stats().misses, 0u);
    // Uncached keys are read from RocksDB (a miss each), then cached by the read.
    EXPECT_EQ(store->read("a").value(), (Record{1, false, "v1"}));
    EXPECT_EQ(store->cache_stats().misses, 1u);
    // A newer batch updates a cached key in place; a stale one is refused by the cached version.
    EXPECT_EQ(store->apply_batch({entry("c", 5)}, true).value(), 1u);
    EXPECT_EQ(store->apply_batch({entry("c", 4)}, true).value(), 0u);
    EXPECT_EQ(store->read("c").value(), (Record{5, false, "v5"}));
    // A wrong key id is refused whether the key is cached or not, and nothing is written.
    Entry wrong = entry("c", 9);
    wrong.key_id = NodeId::hash("not c");
    EXPECT_EQ(store->apply_batch({entry("e", 9), wrong}, true).error(), Errc::invalid_argument);
    wrong.key = "f";
    EXPECT_EQ(store->apply_batch({wrong}, true).error(), Errc::invalid_argument);
    EXPECT_EQ(store->read("c").value(), (Record{5, false, "v5"}));
    EXPECT_EQ(store->read("e").error(), Errc::not_found);
}

// A record over 1/8 of a shard's budget is never cached, and replacing a cached record with
// one drops the old entry rather than leaving it stale.
TEST_F(KeyStoreCacheTest, RecordsTooLargeForTheCacheBypassIt) {
    auto store = open("db", kSmallCacheBytes);  // 4 KiB shards: records over 512 bytes bypass
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->put("key", "small", 1));
    EXPECT_EQ(store->cache_stats().entries, 1u);
    const std::string large(4096, 'L');
    ASSERT_TRUE(store->put("key", large, 2));
    EXPECT_EQ(store->cache_stats().entries, 0u);
    EXPECT_EQ(store->get("key").value(), large);
    EXPECT_EQ(store->get("key").value(), large);
    EXPECT_EQ(store->cache_stats().entries, 0u);
    EXPECT_EQ(store->cache_stats().hits, 0u);
    EXPECT_FALSE(store->apply("key", Record{2, false, "same version"}).value());
    EXPECT_EQ(store->get("key").value(), large);
}

// Reads through a snapshot see the past even when the cache holds the present.
TEST_F(KeyStoreCacheTest, SnapshotReadsBypassTheCache) {
    auto store = open("db", kSmallCacheBytes);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->put("key", "old", 1));
    EXPECT_EQ(store->get("key").value(), "old");
    auto snapshot = store->snapshot();
    ASSERT_TRUE(store->put("key", "new", 2));
    EXPECT_EQ(store->get("key").value(), "new");
    EXPECT_EQ(store->get("key", snapshot.get()).value(), "old");
    EXPECT_EQ(store->read("absent", snapshot.get()).error(), Errc::not_found);
    ASSERT_TRUE(store->put("absent", "later", 3));
    EXPECT_EQ(store->read("absent", snapshot.get()).error(), Errc::not_found);
    EXPECT_EQ(store->get("absent").value(), "later");
}

// The cache lives and dies with its KeyStore: a store reopened after writes made without a
// cache reads those writes, never what an earlier instance had cached.
TEST_F(KeyStoreCacheTest, ReopenedStoreReadsWhatWasWritten) {
    {
        auto store = open("db", kSmallCacheBytes);
        ASSERT_TRUE(store);
        ASSERT_TRUE(store->put("key", "first", 1));
        ASSERT_TRUE(store->put("gone", "here", 1));
        EXPECT_EQ(store->get("key").value(), "first");
        EXPECT_EQ(store->get("gone").value(), "here");
        EXPECT_EQ(store->read("later").error(), Errc::not_found);
    }
    {
        auto store = open("db", 0);
        ASSERT_TRUE(store);
        ASSERT_TRUE(store->put("key", "second", 2));
        ASSERT_TRUE(store->del("gone", 2));
        ASSERT_TRUE(store->put("later", "written", 2));
    }
    auto store = open("db", kSmallCacheBytes);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->read("key").value(), (Record{2, false, "second"}));
    EXPECT_EQ(store->read("gone").value(), (Record{2, true, ""}));
    EXPECT_EQ(store->read("later").value(), (Record{2, false, "written"}));
}

// Four threads read, apply and apply_batch on overlapping keys (32 hot, 2,000 cold to keep a
// small cache evicting). Every read must be a record some apply wrote, and a thread must never
// read a key at a lower version than it read before: a fill that put back an older record
// after a newer write would do exactly that. Afterwards every key holds its highest applied
// version, and reads equal those of the same directory reopened without a cache.
TEST_F(KeyStoreCacheTest, ConcurrentReadsAndAppliesStayCoherent) {
    constexpr int kThreads = 4;
    constexpr std::size_t kOpsPerThread = 20000;
    constexpr std::size_t kHotKeys = 32;
    constexpr std::size_t kColdKeys = 2000;
    constexpr std::size_t kKeys = kHotKeys + kColdKeys;
    auto key_name = [](std::size_t i) { return "key-" + std::to_string(i); };
    // The record for a (key, version) is fixed, so a read can be checked on its own.
    auto record_for = [](const std::string& key, std::uint64_t version) {
        const bool tombstone = version % 7 == 0;
        return Record{version, tombstone, tombstone ? "" : key + "@" + std::to_string(version)};
    };

    auto store = open("db", kSmallCacheBytes);
    ASSERT_TRUE(store);
    // highest[t][k]: the highest version thread t applied to key k (0: none).
    std::vector<std::vector<std::uint64_t>> highest(kThreads, std::vector<std::uint64_t>(kKeys));
    std::atomic<std::size_t> errors{0};
    std::atomic<std::size_t> foreign_records{0};
    std::atomic<std::size_t> backward_reads{0};
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937_64 rng(500 + static_cast<std::uint64_t>(t));
            auto& mine = highest[static_cast<std::size_t>(t)];
            std::vector<std::uint64_t> seen(kKeys);  // highest version this thread read
            auto pick = [&] {
                return rng() % 10 < 7 ? rng() % kHotKeys : kHotKeys + rng() % kColdKeys;
            };
            // Unique per thread, in random order: equal versions are never different writes.
            auto version = [&] {
                return (1 + rng() % 1'000'000) * kThreads + static_cast<std::uint64_t>(t);
            };
            ++ready;
            while (ready < kThreads) std::this_thread::yield();
            for (std::size_t op = 0; op < kOpsPerThread; ++op) {
                const std::size_t kind = rng() % 10;
                if (kind < 5) {
                    const std::size_t k = pick();
                    auto record = store->read(key_name(k));
                    if (!record) {
                        // Nothing is ever removed: once seen, a key stays.
                        if (!(record.error() == Errc::not_found) || seen[k] != 0) ++backward_reads;
                        continue;
                    }
                    if (*record != record_for(key_name(k), record->version)) ++foreign_records;
                    if (record->version < seen[k]) ++backward_reads;
                    seen[k] = std::max(seen[k], record->version);
                } else if (kind < 9) {
                    const std::size_t k = pick();
                    const std::uint64_t v = version();
                    if (!store->apply(key_name(k), record_for(key_name(k), v))) ++errors;
                    mine[k] = std::max(mine[k], v);
                } else {
                    std::vector<Entry> entries;
                    for (int i = 0; i < 4; ++i) {
                        const std::size_t k = pick();
                        const std::uint64_t v = version();
                        const std::string key = key_name(k);
                        entries.push_back(Entry{NodeId::hash(key), key, record_for(key, v)});
                        mine[k] = std::max(mine[k], v);
                    }
                    if (!store->apply_batch(entries)) ++errors;
                }
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(errors, 0u);
    EXPECT_EQ(foreign_records, 0u) << "reads of records no apply wrote";
    EXPECT_EQ(backward_reads, 0u) << "reads older than a read before them in the same thread";
    const KeyStoreCacheStats stats = store->cache_stats();
    EXPECT_GT(stats.hits, 0u);
    EXPECT_GT(stats.evictions, 0u);
    EXPECT_LE(stats.bytes, kSmallCacheBytes);

    std::vector<Result<Record>> through_cache;
    std::size_t not_highest = 0;
    for (std::size_t k = 0; k < kKeys; ++k) {
        std::uint64_t expected = 0;
        for (const auto& applied : highest) expected = std::max(expected, applied[k]);
        through_cache.push_back(store->read(key_name(k)));
        const bool right =
            expected == 0 ? !through_cache.back() && through_cache.back().error() == Errc::not_found
                          : through_cache.back() &&
                                *through_cache.back() == record_for(key_name(k), expected);
        if (!right) ++not_highest;
    }
    EXPECT_EQ(not_highest, 0u) << "keys not at their highest applied version, of " << kKeys;

    store.reset();
    auto plain = open("db", 0);
    ASSERT_TRUE(plain);
    for (std::size_t k = 0; k < kKeys; ++k) {
        ASSERT_TRUE(same_read(through_cache[k], plain->read(key_name(k)))) << key_name(k);
    }
}

}  // namespace
}  // namespace chordkv::storage
