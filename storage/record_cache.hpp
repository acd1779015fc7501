// RecordCache: the bounded cache of decoded records KeyStore keeps in front of its data column
// family (key_store.hpp, "Record cache"; KeyStoreOptions::cache_bytes). Internal to the
// storage layer: KeyStore is its only user, and this header is separate so the protocol below
// can be unit-tested one step at a time.
//
// kRecordCacheShards shards, each a mutex, a list of entries, a hash index into it (an open-
// addressing table, detail::OpenIndex) and a byte budget of bytes_max / kRecordCacheShards. The
// shard is picked by std::hash of the user key, so a hit costs no SHA-1. An entry is a key's
// latest record or "known absent", plus a `pending` flag, in one allocation: a fixed header
// (with the links of the shard's list and the key's ring id), then the key's bytes, then the
// value's. key_id() answers a key's id from its entry, so a request for a cached key needs no
// SHA-1 to find its owner. A hit touches
// that one block: the lookup's key compare reads the header and the key, usually one cache
// line, and the value follows them. Each entry is charged its block plus a fixed estimate of
// its index slots and the allocator's header. A shard over its budget evicts with CLOCK
// (second chance), an LRU approximation: a hit only sets the entry's `referenced` bit, touching
// no other entry's memory (a 100k-key cache does not fit a CPU cache, so every node touched is
// a memory access), and eviction takes the oldest entry, or moves it to the front with its bit
// cleared when set.
//
// Invariant: an entry that is not pending equals what RocksDB holds for its key now (for an
// absent entry: nothing). Lookups treat a pending entry as a miss.
//
// Writers. RocksDB changes a key k only inside a data write holding stripe(k), which does
//
//     begin_write(k) ──► RocksDB write ──► end_write(k, written record | failed)
//
// begin_write marks k's entry pending, counts the write in its shard's writes_in_flight and
// bumps the shard's generation. end_write, after RocksDB answered, stores the written record
// (or "absent" for a removal) and clears pending — or drops the entry when the write failed.
// So while RocksDB may be changing k, k is not served from the cache; readers go to RocksDB
// and see the old or the new record, as without the cache. Both calls run under the stripe
// that orders the RocksDB write, so the cache takes the writes of one key in RocksDB's order.
//
// Readers that miss (KeyStore::read() without a snapshot) must not insert a record a write
// has already replaced:
//
//     token = lookup(k) ──► RocksDB Get(k) ──► fill(k, token, what Get returned)
//
// lookup hands out the shard's generation as the token, or 0 (never fill) when a write is in
// flight in the shard; fill inserts only if the generation still equals the token. A fill that
// succeeds therefore saw no write of any key of its shard in flight at lookup and none begin
// before the fill: RocksDB's record of k did not change from lookup to fill, and the Get, which
// ran in between, returned it. A reader whose Get raced a write finds the generation moved and
// drops its fill, so it can never put back an older record over a newer write's. The price is
// a fill lost now and then to a write of another key of the same shard.
//
// A caller holding stripe(k) (apply's read-before-write) fills with fill_locked(): no write of
// k can run until it lets go, so what it read is current.
//
// Lock order: stripes, then at most one shard mutex at a time. Readers take only a shard
// mutex, for a hash lookup and a copy, so a read never waits for a RocksDB write or its fsync.
//
// Threading: every method may be called from any thread; begin_write / end_write /
// fill_locked only under the stripe of their key, as above.
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chord/node_id.hpp"
#include "storage/key_store.hpp"
#include "storage/record.hpp"

namespace chordkv::storage {

// Shards of the cache, each with its own mutex: enough that two threads rarely want the same
// one, few enough that a shard's budget holds many entries.
inline constexpr std::size_t kRecordCacheShards = 16;
// A record needing over 1/kRecordCacheEntryShare of its shard's budget is not cached: one huge
// value would evict a shard's worth of hot keys.
inline constexpr std::size_t kRecordCacheEntryShare = 8;

namespace detail {

// An open-addressing hash index from a key to a Value (linear probing, deletion by backward
// shift, a power-of-two table kept at most half full, never shrunk). A slot holds the key's
// hash and the Value inline; KeyOf(value) gives the key back for comparisons, so the index
// does not store keys. Against a chained std::unordered_map a lookup saves the bucket and
// node hops: at 264,000 pipelined gets/s the map's lookups were 18 % of chordd's CPU, nearly
// all of it cache misses.
template <class Value, class KeyOf, class Hash = std::hash<std::string_view>>
class OpenIndex {
public:
    // The value stored for `key`, or null. Valid until the next insert or erase.
    Value* find(std::string_view key) {
        const std::size_t i = position(key);
        return i == kNone ? nullptr : &slots_[i].value;
    }
    std::size_t count(std::string_view key) { return find(key) != nullptr ? 1 : 0; }

    // Adds `value` under `key` (KeyOf(value) == key), which must not be in the index.
    void insert(std::string_view key, Value value) {
        if (2 * (size_ + 1) > slots_.size()) grow();
        place(tag_of(key), std::move(value));
        ++size_;
    }

    // Removes `key`; false when it was not there.
    bool erase(std::string_view key) {
        std::size_t hole = position(key);
        if (hole == kNone) return false;
        // Backward shift: a later slot of the same run moves into the hole unless its home
        // lies cyclically in (hole, j], so no lookup meets an empty slot before its key.
        for (std::size_t j = (hole + 1) & mask_; slots_[j].tag != 0; j = (j + 1) & mask_) {
            const std::size_t home = slots_[j].tag & mask_;
            const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
            if (stays) continue;
            slots_[hole] = std::move(slots_[j]);
            hole = j;
        }
        slots_[hole] = Slot{};
        --size_;
        return true;
    }

    std::size_t size() const noexcept { return size_; }

    // Hints for a batch of lookups (RecordCache::prefetch), given the key's Hash: the slot
    // where the lookup starts, and the value of the first slot from there whose hash matches
    // (the key is not compared; null when an empty slot comes first). Neither changes anything.
    const void* home_slot(std::uint64_t hash) const {
        return slots_.empty() ? nullptr : &slots_[tag_of_hash(hash) & mask_];
    }
    const Value* first_match(std::uint64_t hash) const {
        if (size_ == 0) return nullptr;
        const std::uint64_t tag = tag_of_hash(hash);
        for (std::size_t i = tag & mask_;; i = (i + 1) & mask_) {
            const Slot& slot = slots_[i];
            if (slot.tag == 0) return nullptr;
            if (slot.tag == tag) return &slot.value;
        }
    }

    // Bytes per slot, for callers that charge the index to its entries.
    static constexpr std::size_t kSlotBytes = sizeof(std::uint64_t) + sizeof(Value);

private:
    struct Slot {
        std::uint64_t tag = 0;  // the key's hash, 0 mapped to 1; 0 = empty
        Value value{};
    };

    static constexpr std::size_t kNone = ~std::size_t{0};

    // The slot holding `key`, or kNone.
    std::size_t position(std::string_view key) const {
        if (size_ == 0) return kNone;
        const std::uint64_t tag = tag_of(key);
        for (std::size_t i = tag & mask_;; i = (i + 1) & mask_) {
            const Slot& slot = slots_[i];
            if (slot.tag == 0) return kNone;
            if (slot.tag == tag && KeyOf{}(slot.value) == key) return i;
        }
    }

    static std::uint64_t tag_of(std::string_view key) {
        return tag_of_hash(static_cast<std::uint64_t>(Hash{}(key)));
    }
    static std::uint64_t tag_of_hash(std::uint64_t hash) { return hash == 0 ? 1 : hash; }
    void place(std::uint64_t tag, Value value) {
        for (std::size_t i = tag & mask_;; i = (i + 1) & mask_) {
            if (slots_[i].tag == 0) {
                slots_[i] = Slot{tag, std::move(value)};
                return;
            }
        }
    }
    void grow() {
        std::vector<Slot> old = std::move(slots_);
        slots_.assign(old.empty() ? 16 : 2 * old.size(), Slot{});
        mask_ = slots_.size() - 1;
        for (Slot& slot : old) {
            if (slot.tag != 0) place(slot.tag, std::move(slot.value));
        }
    }

    std::vector<Slot> slots_;
    std::size_t mask_ = 0;
    std::size_t size_ = 0;
};

}  // namespace detail

class RecordCache {
public:
    // A cache whose entries' charges sum to at most `bytes_max` (KeyStoreOptions::cache_bytes);
    // below kRecordCacheShards bytes nothing fits, and nothing is cached.
    explicit RecordCache(std::size_t bytes_max)
        : shard_bytes_max_(bytes_max / kRecordCacheShards),
          entry_bytes_max_(shard_bytes_max_ / kRecordCacheEntryShare) {}
    ~RecordCache() {
        for (Shard& shard : shards_) {
            while (shard.newest != nullptr) {
                CacheEntry* entry = shard.newest;
                unlink(shard, entry);
                destroy(entry);
            }
        }
    }
    RecordCache(const RecordCache&) = delete;
    RecordCache& operator=(const RecordCache&) = delete;

    // Starts loading into the CPU's cache what lookups of `keys` will touch: each key's index
    // slot, then the entry it points to. For a batch of requests about to be served one by
    // one (Node: the frames of one read): the first touch of a key's entry is two dependent
    // cache misses (about 12 % of chordd's CPU under pipelined gets), and here those of
    // several keys overlap. Changes nothing, counts nothing.
    void prefetch(const std::vector<std::string_view>& keys) {
        // In rounds of a few keys, so that the hashes stay on the stack.
        constexpr std::size_t kRound = 32;
        std::array<std::uint64_t, kRound> hashes;
        for (std::size_t first = 0; first < keys.size(); first += kRound) {
            const std::size_t n = std::min(kRound, keys.size() - first);
            for (std::size_t i = 0; i < n; ++i) {
                hashes[i] =
                    static_cast<std::uint64_t>(std::hash<std::string_view>{}(keys[first + i]));
                Shard& shard = shard_of_hash(hashes[i]);
                const std::lock_guard<std::mutex> lock(shard.mutex);
                if (const void* slot = shard.index.home_slot(hashes[i])) __builtin_prefetch(slot);
            }
            for (std::size_t i = 0; i < n; ++i) {
                Shard& shard = shard_of_hash(hashes[i]);
                const std::lock_guard<std::mutex> lock(shard.mutex);
                if (CacheEntry* const* entry = shard.index.first_match(hashes[i])) {
                    // The header, and the key after it, which a lookup compares.
                    const char* at = reinterpret_cast<const char*>(*entry);
                    __builtin_prefetch(at);
                    __builtin_prefetch(at + sizeof(CacheEntry));
                }
            }
        }
    }

    // What lookup() found.
    struct Lookup {
        bool hit = false;
        std::optional<Record> record;  // on a hit: the record, or nullopt for "known absent"
        std::uint64_t fill_token = 0;  // on a miss: pass to fill(); 0 = do not fill
    };
    // The cached record of `key`, counted as a hit and marked referenced; or a miss
    // (also when the entry is pending), counted, with the token for fill().
    Lookup lookup(std::string_view key) {
        Shard& shard = shard_of(key);
        const std::lock_guard<std::mutex> lock(shard.mutex);
        Lookup out;
        if (CacheEntry* entry = find_current(shard, key)) {
            out.hit = true;
            if (entry->present) {
                out.record.emplace();
                out.record->version = entry->version;
                out.record->tombstone = entry->tombstone;
                out.record->value.assign(entry->value_data(), entry->value_size);
            }
            return out;
        }
        if (shard.writes_in_flight == 0) out.fill_token = shard.generation;
        return out;
    }

    // What version() found.
    struct Version {
        bool hit = false;
        bool present = false;  // on a hit: false for "known absent"
        std::uint64_t version = 0;
    };
    // lookup() of the version alone, without copying the value, for a read-before-write.
    Version version(std::string_view key) {
        Shard& shard = shard_of(key);
        const std::lock_guard<std::mutex> lock(shard.mutex);
        Version out;
        if (CacheEntry* entry = find_current(shard, key)) {
            out.hit = true;
            out.present = entry->present;
            out.version = entry->version;
        }
        return out;
    }

    // The ring id of `key` (chord::NodeId::hash(key)) when the key has an entry, pending or
    // "known absent" included (a key's id never changes); else nullopt. Marks the entry
    // referenced; not counted as a hit or miss, which count record reads.
    std::optional<chord::NodeId> key_id(std::string_view key) {
        Shard& shard = shard_of(key);
        const std::lock_guard<std::mutex> lock(shard.mutex);
        CacheEntry* const* it = shard.index.find(key);
        if (it == nullptr) return std::nullopt;
        (*it)->referenced = true;
        return (*it)->key_id;
    }

    // Caches what a RocksDB read begun after lookup() returned: `record`, or "known absent"
    // when null. Dropped when `token` is 0 or a write in the key's shard began since lookup()
    // (see the top), when the key was cached meanwhile, or when the record is too large.
    // `key_id` must be chord::NodeId::hash(key), as with every call here that takes one.
    void fill(std::string_view key, const chord::NodeId& key_id, std::uint64_t token,
              const Record* record) {
        if (token == 0) return;
        Shard& shard = shard_of(key);
        const std::lock_guard<std::mutex> lock(shard.mutex);
        if (shard.generation != token) return;
        // An entry filled since lookup() holds the same record (the invariant): keep it.
        if (shard.index.count(key) != 0) return;
        insert(shard, key, key_id, record);
    }

    // fill() for a caller holding the key's stripe, which no write of the key can race.
    void fill_locked(std::string_view key, const chord::NodeId& key_id, const Record& record) {
        Shard& shard = shard_of(key);
        const std::lock_guard<std::mutex> lock(shard.mutex);
        if (CacheEntry* const* it = shard.index.find(key)) {
            // Pending only inside a write of the key, and the caller's stripe excludes those.
            assert(!(*it)->pending);
            (void)it;
            return;
        }
        insert(shard, key, key_id, &record);
    }

    // One key of a data write, for end_write(). The views must stay valid until then.
    struct Write {
        std::string_view key;
        bool present = true;  // false: the write removes the key (erase_unchanged, purge)
        std::uint64_t version = 0;
        bool tombstone = false;
        std::string_view value;  // empty for a tombstone
        bool allocate = false;   // cache the record when the key is not cached yet
        chord::NodeId key_id;    // hash(key); needed only when `allocate`
    };

    // Before the RocksDB write of `key`, under its stripe: the key stops being served until
    // end_write(), and fills of its shard whose lookup came earlier are dropped. Each call
    // must be paired with one end_write() (KeyStore's CacheWriteScope does it).
    void begin_write(std::string_view key) {
        Shard& shard = shard_of(key);
        const std::lock_guard<std::mutex> lock(shard.mutex);
        ++shard.writes_in_flight;
        ++shard.generation;
        if (CacheEntry** it = shard.index.find(key)) (*it)->pending = true;
    }

    // After the RocksDB write, still under the stripe. `written`: RocksDB took it, so a cached
    // entry becomes `write`'s record (and an uncached key gets one when write.allocate).
    // Otherwise the entry is dropped: RocksDB may or may not hold the write.
    void end_write(const Write& write, bool written) {
        Shard& shard = shard_of(write.key);
        const std::lock_guard<std::mutex> lock(shard.mutex);
        assert(shard.writes_in_flight > 0);
        --shard.writes_in_flight;
        CacheEntry** it = shard.index.find(write.key);
        if (!written) {
            if (it != nullptr) erase(shard, *it);
            return;
        }
        const std::string_view value =
            write.present && !write.tombstone ? write.value : std::string_view();
        if (it == nullptr) {
            if (write.allocate) {
                assert(write.key_id == chord::NodeId::hash(write.key));
                insert(shard, write.key, write.key_id, write.present, write.version,
                       write.tombstone, value);
            }
            return;
        }
        CacheEntry* entry = *it;
        // A value much smaller than the one before would leave its capacity charged.
        const bool fits = value.size() <= entry->value_capacity &&
                          entry->value_capacity <= 2 * value.size() + kShortValueBytes;
        if (!fits) {
            // A new block for the value, in the old one's place in the list and the index.
            if (value.size() > kFieldBytesMax ||
                charge_of(entry->key_size, value.size()) > entry_bytes_max_) {
                erase(shard, entry);
                return;
            }
            CacheEntry* grown = create(entry->key(), entry->key_id, value.size());
            grown->newer = entry->newer;
            grown->older = entry->older;
            (grown->newer != nullptr ? grown->newer->older : shard.newest) = grown;
            (grown->older != nullptr ? grown->older->newer : shard.oldest) = grown;
            shard.bytes -= entry->charge;
            shard.bytes += grown->charge;
            destroy(entry);
            *it = grown;
            entry = grown;
        }
        entry->pending = false;
        entry->present = write.present;
        entry->version = write.present ? write.version : 0;
        entry->tombstone = write.present && write.tombstone;
        entry->value_size = static_cast<std::uint32_t>(value.size());
        if (!value.empty()) std::memcpy(entry->value_data(), value.data(), value.size());
        entry->referenced = true;
        evict(shard);
    }

    // Counters summed over the shards, each read under its own lock.
    KeyStoreCacheStats stats() const {
        KeyStoreCacheStats out;
        for (const Shard& shard : shards_) {
            const std::lock_guard<std::mutex> lock(shard.mutex);
            out.hits += shard.hits;
            out.misses += shard.misses;
            out.evictions += shard.evictions;
            out.entries += shard.index.size();
            out.bytes += shard.bytes;
        }
        return out;
    }

private:
    // One allocation: this header, then key_size bytes of key, then value_capacity bytes of
    // which value_size hold the value. Made by create(), freed by destroy().
    struct CacheEntry {
        CacheEntry* newer = nullptr;  // toward the front of the shard's list
        CacheEntry* older = nullptr;  // toward the back, where eviction works
        std::uint64_t version = 0;    // 0 when !present
        std::size_t charge = 0;       // what the entry counts against its shard's budget
        std::uint32_t key_size = 0;
        std::uint32_t value_size = 0;
        std::uint32_t value_capacity = 0;
        bool present = true;
        bool tombstone = false;
        bool pending = false;     // a write of the key is in flight (see the top)
        bool referenced = false;  // used since eviction last passed it (CLOCK's second chance)
        chord::NodeId key_id;     // hash of the key

        char* key_data() noexcept { return reinterpret_cast<char*>(this + 1); }
        const char* key_data() const noexcept { return reinterpret_cast<const char*>(this + 1); }
        std::string_view key() const noexcept { return {key_data(), key_size}; }
        char* value_data() noexcept { return key_data() + key_size; }
        const char* value_data() const noexcept { return key_data() + key_size; }
    };
    struct KeyOfEntry {
        std::string_view operator()(const CacheEntry* entry) const { return entry->key(); }
    };
    using Index = detail::OpenIndex<CacheEntry*, KeyOfEntry>;

    // The bookkeeping an entry costs besides its block: the allocator's header and up to four
    // index slots (the index is between a quarter and half full).
    static constexpr std::size_t kAllocatorOverheadBytes = 16;
    static constexpr std::size_t kEntryOverheadBytes =
        kAllocatorOverheadBytes + 4 * Index::kSlotBytes;
    // Values up to this long are not worth moving to a smaller block.
    static constexpr std::size_t kShortValueBytes = 64;
    // Longest key or value an entry can describe (its sizes are 32-bit); far above any record
    // entry_bytes_max_ lets in, so the bound only guards the casts.
    static constexpr std::size_t kFieldBytesMax = 0xffffffffu;

    // alignas: shards are locked by different threads; keep them off each other's cache lines.
    struct alignas(64) Shard {
        mutable std::mutex mutex;
        // Front: the newest entries and those given a second chance; eviction works from the
        // back.
        CacheEntry* newest = nullptr;
        CacheEntry* oldest = nullptr;
        Index index;
        std::size_t bytes = 0;  // sum of the entries' charges
        // Bumped by every begin_write; fill tokens are generations, so never 0.
        std::uint64_t generation = 1;
        std::size_t writes_in_flight = 0;
        std::uint64_t hits = 0;
        std::uint64_t misses = 0;
        std::uint64_t evictions = 0;
    };

    static std::size_t charge_of(std::size_t key_bytes, std::size_t value_capacity) {
        return kEntryOverheadBytes + sizeof(CacheEntry) + key_bytes + value_capacity;
    }

    // A new entry for `key` with room for `value_capacity` value bytes (value_size 0), not
    // linked anywhere.
    static CacheEntry* create(std::string_view key, const chord::NodeId& key_id,
                              std::size_t value_capacity) {
        void* block = ::operator new(sizeof(CacheEntry) + key.size() + value_capacity);
        auto* entry = new (block) CacheEntry();
        entry->key_id = key_id;
        entry->key_size = static_cast<std::uint32_t>(key.size());
        entry->value_capacity = static_cast<std::uint32_t>(value_capacity);
        entry->charge = charge_of(key.size(), value_capacity);
        if (!key.empty()) std::memcpy(entry->key_data(), key.data(), key.size());
        return entry;
    }
    static void destroy(CacheEntry* entry) noexcept {
        entry->~CacheEntry();
        ::operator delete(static_cast<void*>(entry));
    }

    static void push_front(Shard& shard, CacheEntry* entry) noexcept {
        entry->newer = nullptr;
        entry->older = shard.newest;
        (shard.newest != nullptr ? shard.newest->newer : shard.oldest) = entry;
        shard.newest = entry;
    }
    static void unlink(Shard& shard, CacheEntry* entry) noexcept {
        (entry->newer != nullptr ? entry->newer->older : shard.newest) = entry->older;
        (entry->older != nullptr ? entry->older->newer : shard.oldest) = entry->newer;
        entry->newer = entry->older = nullptr;
    }

    Shard& shard_of(std::string_view key) {
        return shard_of_hash(static_cast<std::uint64_t>(std::hash<std::string_view>{}(key)));
    }
    Shard& shard_of_hash(std::uint64_t hash) {
        // The high bits: the index's buckets use the low ones.
        return shards_[(hash >> 32) % kRecordCacheShards];
    }

    // The key's entry if it may be served (counted as a hit and marked referenced), else null
    // (counted as a miss).
    CacheEntry* find_current(Shard& shard, std::string_view key) {
        CacheEntry* const* it = shard.index.find(key);
        if (it == nullptr || (*it)->pending) {
            ++shard.misses;
            return nullptr;
        }
        ++shard.hits;
        (*it)->referenced = true;
        return *it;
    }

    // Adds an entry for `key`, which has none: `record`, or absent when null.
    void insert(Shard& shard, std::string_view key, const chord::NodeId& key_id,
                const Record* record) {
        if (record == nullptr) {
            insert(shard, key, key_id, /*present=*/false, 0, false, {});
            return;
        }
        const std::string_view value =
            record->tombstone ? std::string_view() : std::string_view(record->value);
        insert(shard, key, key_id, /*present=*/true, record->version, record->tombstone, value);
    }
    void insert(Shard& shard, std::string_view key, const chord::NodeId& key_id, bool present,
                std::uint64_t version, bool tombstone, std::string_view value) {
        if (key.size() > kFieldBytesMax || value.size() > kFieldBytesMax ||
            charge_of(key.size(), value.size()) > entry_bytes_max_) {
            return;
        }
        assert(key_id == chord::NodeId::hash(key));
        CacheEntry* entry = create(key, key_id, value.size());
        entry->present = present;
        entry->version = present ? version : 0;
        entry->tombstone = present && tombstone;
        entry->value_size = static_cast<std::uint32_t>(value.size());
        if (!value.empty()) std::memcpy(entry->value_data(), value.data(), value.size());
        push_front(shard, entry);
        shard.index.insert(entry->key(), entry);
        shard.bytes += entry->charge;
        evict(shard);
    }

    void erase(Shard& shard, CacheEntry* entry) {
        shard.bytes -= entry->charge;
        shard.index.erase(entry->key());
        unlink(shard, entry);
        destroy(entry);
    }

    // Drops entries from the back until the shard is within its budget, giving referenced
    // ones a second chance. Every step clears a bit or drops an entry, so it ends. An entry
    // joins at the front unreferenced, so a key read once (say, a sweep over cold keys) goes
    // before one that was read again.
    void evict(Shard& shard) {
        while (shard.bytes > shard_bytes_max_ && shard.oldest != nullptr) {
            CacheEntry* oldest = shard.oldest;
            if (oldest->referenced) {
                oldest->referenced = false;
                unlink(shard, oldest);
                push_front(shard, oldest);
                continue;
            }
            erase(shard, oldest);
            ++shard.evictions;
        }
    }

    const std::size_t shard_bytes_max_;
    const std::size_t entry_bytes_max_;
    std::array<Shard, kRecordCacheShards> shards_;
};

}  // namespace chordkv::storage
