// KeyStore: one node's RocksDB, holding its share of the ring's keys and its metadata.
//
// Column families:
//     "default"  data: storage key -> record (layout in storage/record.hpp)
//     "meta"     node metadata: name -> raw bytes (node ids, cluster name, settings)
//
// Keys are laid out in ring order, so the keys a node owns — the arc (predecessor, self] —
// are one or two contiguous RocksDB ranges and handoff streams them with scan():
//
//     ring order:  0 ......... b ]  ( a ........ 2^160-1
//     scan(a, b):  ------------>2   1------------------->    a > b: (a, max] then [0, b]
//
// Replication and repair write through apply() / apply_batch(): last writer wins by version
// (DESIGN.md "Data path"), atomically per key within this process:
//
//     lock stripe(key) ─► read stored version ─► newer? write : keep ─► unlock
//
// Every data write (put, del, write, apply, apply_batch, purge_tombstones) takes the stripe of
// each key it touches, one of kKeyStripes mutexes chosen by the key id, so a read-compare-write
// never interleaves with another write of the same key. Writes that need several stripes take
// them in ascending stripe order, so they cannot deadlock.
//
// Version bound: the read is skipped when the new version is above every version this store
// can hold, which is the common case for an owner's fresh HLC stamp. Two numbers bound the
// versions held:
//     ceiling       persisted in meta ("storage.version_ceiling"): every data write whose
//                   highest version exceeds it raises it, in the same RocksDB batch, to that
//                   version + 2^32 (about 65 s of HLC time), so no record above it is ever
//                   stored without it; raises are serialized, so it only grows
//     written_max   in memory: the highest version written since open, raised before each
//                   data write (a failed write may still have landed)
// A version above both the ceiling read at open and written_max is newer than anything
// stored for any key, and so for its own: it is written without a read. A store opened
// without a ceiling (written by an older build) is scanned once for its highest version.
// Meta names starting with "storage." are reserved for this.
//
// Anti-entropy compares arcs through digest(): the arc cut into equal sub-arcs by key id, each
// summarised by a SHA-256 over its (storage key, version, tombstone) entries and a count. Equal
// digests mean equal versions; a differing bucket names the sub-arc (digest_bucket_arc) to
// scan and send.
//
// Record cache: with KeyStoreOptions::cache_bytes > 0, a bounded cache of decoded records
// sits in front of the data column family, so read() and get() of a hot key, and the
// read-before-write of apply(), are a hash-map lookup instead of a memtable and SST search. An
// entry is a key's latest record or "known absent" (a read found nothing), so misses and first
// writes of new keys skip RocksDB too. The cache is coherent: it serves an entry only while it
// equals what RocksDB holds for the key (the argument heads storage/record_cache.hpp), so
// results are the same with and without it. Reads through a Snapshot, scan(), digest() and
// count() read RocksDB. Single-key writes (put, del, apply) cache what they write; batches
// (write, apply_batch unless told to cache new keys) and removals (erase_unchanged,
// purge_tombstones) refresh only keys already cached, so a handoff or repair stream does not
// flush the hot keys.
//
// Every write goes through the WAL. With KeyStoreOptions::sync_writes the WAL is fsynced
// before a write returns, so an acknowledged write survives power loss; without it, it
// survives a process crash only.
//
// Errors: every public function reports expected failures as values, never exceptions.
//     invalid_argument  empty key or meta name, a meta name starting with "storage." (reserved),
//                       zero batch size, resume key outside the arc,
//                       digest bucket count out of range, Entry key_id not its key's hash
//     too_large         a key, value or batch over its KeyStoreOptions limit
//     not_found         the key or meta name is absent (get(): or is a tombstone)
//     corruption        stored bytes do not decode, or RocksDB reports corruption
//     storage_error     any other RocksDB failure; the detail keeps RocksDB's message
//
// Threading: the RocksDB DB is thread-safe, and every KeyStore method may be called from any
// thread concurrently. A WriteBatch is a plain value and is not thread-safe; a Snapshot may
// be shared by threads that only read through it. Snapshots must be destroyed before the
// KeyStore that made them.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chord/node_id.hpp"
#include "chord/result.hpp"
#include "storage/record.hpp"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Snapshot;
class Status;
class WriteBatch;
}  // namespace rocksdb

namespace chordkv::storage {

struct KeyStoreOptions {
    // A fresh node starts with an empty store; turn off to refuse a mistyped data directory.
    bool create_if_missing = true;
    // fsync the WAL on every write, so an acknowledged write survives power loss (chordd
    // --sync). Off: writes still go through the WAL and survive a process crash.
    bool sync_writes = false;
    // Shared LRU block cache for both column families; small because the OS page cache also
    // holds recently read SST files.
    std::size_t block_cache_bytes = std::size_t{32} << 20;
    // Memtable size per column family before a flush; bounds memory and recovery replay time.
    std::size_t write_buffer_bytes = std::size_t{32} << 20;
    // Longest user key or meta name accepted; every storage key embeds the user key, so long
    // keys cost memtable, cache and handoff space.
    std::size_t key_bytes_max = std::size_t{64} << 10;
    // Largest value or meta value accepted; bounds one request's memory and network frame.
    std::size_t value_bytes_max = std::size_t{16} << 20;
    // Largest WriteBatch (sum of keys and values) accepted by write(); a batch is one WAL
    // record and is held in memory twice while it is written.
    std::size_t batch_bytes_max = std::size_t{64} << 20;
    // Record cache bound (see the top of this file): keys, values and an estimate of the
    // per-entry bookkeeping, split evenly over 16 shards; a record needing over 1/8 of its
    // shard is not cached. 0 turns the cache off: every read goes to RocksDB.
    std::size_t cache_bytes = std::size_t{64} << 20;
};

// Counters of the record cache (KeyStore::cache_stats); all zero when it is off.
struct KeyStoreCacheStats {
    std::uint64_t hits = 0;       // lookups answered by the cache (reads, apply version checks)
    std::uint64_t misses = 0;     // lookups that went to RocksDB
    std::uint64_t evictions = 0;  // entries dropped to stay within cache_bytes
    std::uint64_t entries = 0;    // keys cached, known-absent ones included
    std::uint64_t bytes = 0;      // accounted bytes of those entries; at most cache_bytes
};

// Default soft cap on one scan batch's key and value bytes: a handoff frame's worth.
inline constexpr std::size_t kScanBatchBytesMaxDefault = std::size_t{4} << 20;

// Most buckets digest() accepts: 4096 buckets are 128 KiB of hashes, a handful of frames.
inline constexpr std::size_t kDigestBucketsMax = 4096;

// Mutexes guarding per-key read-compare-write (see the top of this file): enough that
// unrelated keys rarely share one, few enough to lock all of them in a big batch.
inline constexpr std::size_t kKeyStripes = 256;

// Summary of an arc for anti-entropy (KeyStore::digest). buckets[i] is the SHA-256 over the
// entries of the arc's i-th sub-arc in ring order, each entry fed as
//     8-byte big-endian user key length | storage key | 8-byte big-endian version | flags byte
// (flags as stored: bit 0 = tombstone; value bytes are left out, the version identifies
// them). counts[i] is how many entries (tombstones included) the sub-arc holds; an empty
// sub-arc hashes the empty input. Both vectors have one element per bucket.
struct ArcDigest {
    std::vector<std::array<std::uint8_t, 32>> buckets;
    std::vector<std::uint64_t> counts;

    friend bool operator==(const ArcDigest& a, const ArcDigest& b) {
        return a.buckets == b.buckets && a.counts == b.counts;
    }
    friend bool operator!=(const ArcDigest& a, const ArcDigest& b) { return !(a == b); }
};

// The sub-arc (from_exclusive, to_inclusive] covered by bucket `index` when the arc
// (from_exclusive, to_inclusive] (from == to: the whole ring) is cut into `buckets` sub-arcs
// for digest(). Sub-arc i holds the key ids whose offset from from_exclusive + 1 lies in
// [ceil(i·L/buckets), ceil((i+1)·L/buckets)), L being the arc's length, so the sub-arcs are
// consecutive, disjoint, cover the arc and differ in length by at most one id. nullopt when
// buckets is 0 or over kDigestBucketsMax, index >= buckets, or the sub-arc holds no ids (only
// possible for an arc shorter than `buckets` ids).
std::optional<std::pair<chord::NodeId, chord::NodeId>> digest_bucket_arc(
    const chord::NodeId& from_exclusive, const chord::NodeId& to_inclusive, std::size_t buckets,
    std::size_t index);

// How many entries an arc holds (KeyStore::count).
struct ArcCount {
    std::uint64_t live = 0;
    std::uint64_t tombstones = 0;
};

class KeyStore;
class RecordCache;

// A consistent read-only view of the store at the moment snapshot() was called (RAII over
// rocksdb::DB::GetSnapshot / ReleaseSnapshot). Holding one pins old versions of keys on disk,
// so release it when the scan that needs it is done.
class Snapshot {
public:
    Snapshot(const Snapshot&) = delete;
    Snapshot& operator=(const Snapshot&) = delete;
    ~Snapshot();

private:
    friend class KeyStore;
    Snapshot(const KeyStore* owner, rocksdb::DB* db, const rocksdb::Snapshot* snapshot)
        : owner_(owner), db_(db), snapshot_(snapshot) {}

    const KeyStore* owner_;  // the store that made it; reads through another store assert
    rocksdb::DB* db_;
    const rocksdb::Snapshot* snapshot_;
};

// One arc-scan batch. Pass `resume_after` back to scan() to continue; it is nullopt exactly
// when the arc has no entries after this batch (as seen by this scan's read view).
struct ScanBatch {
    std::vector<Entry> entries;               // ring order, starting just after the arc start
    std::optional<std::string> resume_after;  // storage key of entries.back() when not done
};

// Writes applied atomically by KeyStore::write(): all or none become visible, in one WAL
// record. Operations apply in the order added (a later put of the same key wins).
// Arguments are only checked by write(), against the store's limits.
class WriteBatch {
public:
    void put(std::string_view key, std::string_view value, std::uint64_t version);
    void del(std::string_view key, std::uint64_t version);
    void put_meta(std::string_view name, std::string_view bytes);
    void del_meta(std::string_view name);

    // Number of operations added.
    std::size_t size() const noexcept { return ops_.size(); }
    // Sum of the key (or name) and value bytes added; write() compares it with
    // KeyStoreOptions::batch_bytes_max.
    std::size_t bytes() const noexcept { return bytes_; }
    bool empty() const noexcept { return ops_.empty(); }
    void clear() noexcept {
        ops_.clear();
        bytes_ = 0;
    }

private:
    friend class KeyStore;
    enum class Kind { put, del, put_meta, del_meta };
    struct Op {
        Kind kind;
        std::string key;  // user key or meta name
        std::string value;
        std::uint64_t version;
    };
    std::vector<Op> ops_;
    std::size_t bytes_ = 0;
};

class KeyStore {
public:
    // Opens (or, with create_if_missing, creates) the store at directory `path`, creating the
    // "meta" column family when missing. storage_error (RocksDB's message kept) when the
    // directory cannot be created, is locked by another process, or holds an unexpected
    // database; corruption when RocksDB finds damaged files.
    static Result<std::unique_ptr<KeyStore>> open(const std::string& path,
                                                  const KeyStoreOptions& options);

    KeyStore(const KeyStore&) = delete;
    KeyStore& operator=(const KeyStore&) = delete;
    // Closes the database. Outstanding Snapshots must already be destroyed.
    ~KeyStore();

    // The key's ring id, chord::NodeId::hash(key): from the record cache when it has an entry
    // for the key (a hash lookup), else computed (SHA-1, about 160 ns for a short key). For
    // callers that route a request by its key before they read or write it.
    chord::NodeId key_id(std::string_view key) const;
    // Starts loading the record cache's entries of `keys` into the CPU's cache, for requests
    // about to be served one by one (RecordCache::prefetch). A hint: changes nothing.
    void prefetch(const std::vector<std::string_view>& keys) const;

    // The record stored for `key`, tombstones included. not_found only when the key has
    // never been written (or its tombstone was purged); invalid_argument for an empty key.
    Result<Record> read(std::string_view key, const Snapshot* snapshot = nullptr) const;

    // The live value of `key`: not_found when absent or tombstoned.
    Result<std::string> get(std::string_view key, const Snapshot* snapshot = nullptr) const;

    // Stores `value` for `key` at `version`, replacing whatever was there (the caller decides
    // which version wins). invalid_argument for an empty key; too_large over a limit.
    Status put(std::string_view key, std::string_view value, std::uint64_t version);

    // Writes a tombstone for `key` at `version`. Deleting an absent key still writes one, so
    // a delete that arrives before the put it overrides is kept.
    Status del(std::string_view key, std::uint64_t version);

    // Applies every operation in `batch` atomically. Checks all operations first: on
    // invalid_argument or too_large nothing is written. The batch is left unchanged.
    Status write(const WriteBatch& batch);

    // Last-writer-wins write, for replication, handoff and repair: stores `record` (a value,
    // or a tombstone whose value is ignored) for `key` only when nothing is stored for it or
    // the stored record's version is strictly lower. Returns true when written; false when
    // the stored record is as new or newer — an equal version is the same write arriving
    // again, so applying a record twice is harmless. Atomic with respect to every other write
    // of `key` in this process (the key's stripe is held around read, compare and write).
    // invalid_argument for an empty key; too_large over key_bytes_max or (values only)
    // value_bytes_max; corruption when the stored record does not decode (nothing written).
    Result<bool> apply(std::string_view key, const Record& record);

    // apply() for many entries in one RocksDB WriteBatch (one WAL record): each entry is
    // written when it is newer than the stored record and than every other entry for the same
    // key in `entries`. Returns how many keys were written. All entries are checked first, and
    // on any error nothing is written: invalid_argument for an empty key or an Entry whose
    // key_id is not NodeId::hash(key); too_large for a key or value over its limit or entries
    // summing (keys and values) over batch_bytes_max; corruption as in apply(). Holds the
    // stripes of all its keys from the reads until the batch is written.
    // `cache_new_keys`: cache every key written, as apply() does (a replica's writes, so a
    // failover finds them cached); by default only keys already cached are refreshed, so a
    // handoff or repair stream does not flush the hot keys.
    Result<std::size_t> apply_batch(const std::vector<Entry>& entries, bool cache_new_keys = false);

    // Physically deletes tombstones whose version is below `version_before` (callers pass
    // "now minus the grace period" as a stamp), at most `keys_max` per call; call again until
    // it returns 0. Each candidate is read again under its stripe before it is deleted, so a
    // write racing the purge is never lost. Values and newer tombstones are never touched.
    // Cost: reads the data column family from the start until keys_max candidates are found
    // (a whole-store scan when there are fewer). invalid_argument when keys_max is 0;
    // corruption when a stored key or tombstone does not decode (nothing deleted).
    Result<std::size_t> purge_tombstones(std::uint64_t version_before, std::size_t keys_max);

    // Physically removes each entry's key when its stored record still has the entry's
    // version (read and removed under the key's stripe, so a newer write is never lost), for
    // a copy this process no longer has to hold once its new holders acknowledged it.
    // Returns how many keys were removed. corruption when a stored record does not decode.
    Result<std::size_t> erase_unchanged(const std::vector<Entry>& entries);

    // Node metadata, stored verbatim in the "meta" column family.
    // invalid_argument for an empty name; too_large over key_bytes_max / value_bytes_max.
    Status put_meta(std::string_view name, std::string_view bytes);
    // not_found when `name` was never stored (or was deleted).
    Result<std::string> get_meta(std::string_view name) const;
    // Removes `name`; removing an absent name succeeds.
    Status del_meta(std::string_view name);

    // Entries whose key id lies in the arc (from_exclusive, to_inclusive], in ring order
    // starting just after `from_exclusive`: for a wrapping arc (from > to) that is
    // (from, max] then [0, to]; from == to means the whole ring starting after `from`.
    // Tombstones are included (Record::tombstone).
    //
    // Returns at most `batch_keys_max` entries, and stops early once the entries hold
    // `batch_bytes_max` key and value bytes (a soft cap: a batch always has at least one
    // entry when any remain, even one larger than the cap). Pass the returned resume_after
    // to continue strictly after the last entry; nullopt starts at the arc start. Without a
    // snapshot each batch reads the latest data, so keys written between batches may or may
    // not appear; pass the same snapshot to every batch for a consistent view.
    //
    // invalid_argument: batch_keys_max or batch_bytes_max is zero, or resume_after is not a
    // storage key inside the arc. corruption: a stored key or record does not decode.
    Result<ScanBatch> scan(const chord::NodeId& from_exclusive, const chord::NodeId& to_inclusive,
                           std::size_t batch_keys_max,
                           const std::optional<std::string>& resume_after,
                           const Snapshot* snapshot = nullptr,
                           std::size_t batch_bytes_max = kScanBatchBytesMaxDefault) const;

    // The anti-entropy digest (ArcDigest) of the arc (from_exclusive, to_inclusive], same arc
    // convention as scan(), cut into `buckets` sub-arcs as digest_bucket_arc() describes. Two
    // stores holding the same keys at the same versions and tombstone flags in the arc give
    // equal digests, whatever their values and write order. Reads through `snapshot`, or
    // through a snapshot of its own, so the digest is one consistent view. Reads every entry
    // of the arc (values included), in scan batches.
    // invalid_argument: buckets is 0 or over kDigestBucketsMax. corruption: as scan().
    Result<ArcDigest> digest(const chord::NodeId& from_exclusive, const chord::NodeId& to_inclusive,
                             std::size_t buckets, const Snapshot* snapshot = nullptr) const;

    // Entries in the arc (from_exclusive, to_inclusive] (same convention as scan()), live
    // values and tombstones apart. Reads the arc's keys and record headers, as of `snapshot`
    // when given (then safe on any thread while the store lives).
    // corruption: a stored key or record does not decode.
    Result<ArcCount> count(const chord::NodeId& from_exclusive, const chord::NodeId& to_inclusive,
                           const Snapshot* snapshot = nullptr) const;

    // A consistent read view for read(), get(), scan() and digest(). Never null.
    std::unique_ptr<Snapshot> snapshot() const;

    // RocksDB's estimate of the number of data keys (tombstones included); cheap, and may be
    // off by a large factor after many overwrites or deletes.
    Result<std::uint64_t> approximate_keys() const;

    // A snapshot of the record cache's counters (summed over its shards, each read under its
    // own lock, so not one instant). All zero when KeyStoreOptions::cache_bytes is 0.
    KeyStoreCacheStats cache_stats() const;

    const KeyStoreOptions& options() const noexcept { return options_; }

    // How many apply()/apply_batch() records were written without reading the stored version
    // (the version bound at the top); for tests and stats.
    std::uint64_t version_reads_skipped() const noexcept {
        return reads_skipped_.load(std::memory_order_relaxed);
    }

private:
    KeyStore(KeyStoreOptions options, std::unique_ptr<rocksdb::DB> db,
             rocksdb::ColumnFamilyHandle* data_cf, rocksdb::ColumnFamilyHandle* meta_cf);

    Status check_key(std::string_view key) const;
    Status check_value(std::string_view key, std::size_t value_bytes) const;
    Status check_meta(std::string_view name, std::size_t value_bytes) const;
    Status check_batch(const WriteBatch& batch) const;

    // The record RocksDB holds under `storage_key`, nullopt when none; with `with_value` false
    // only its header is decoded (the value is left empty). corruption when the stored record
    // does not decode; `key` names the key in messages.
    Result<std::optional<Record>> stored_record(const std::string& storage_key,
                                                std::string_view key, bool with_value) const;

    // Whether a record at `version` is newer than what is stored for `key` (true when nothing
    // is), from the cache when it holds the key, else from RocksDB. The caller holds the key's
    // stripe. Errors as stored_record().
    Result<bool> newer_than_stored(const std::string& storage_key, std::string_view key,
                                   std::uint64_t version) const;

    // read() without a snapshot when the cache is on.
    Result<Record> read_cached(std::string_view key) const;

    // Sets the version bound at open: the persisted ceiling, or for a store without one the
    // highest version found by a scan (then persisted).
    Status load_version_ceiling();
    // True when `version` is above every version the store can hold (see the top). The caller
    // holds the stripe of the key it is about to write.
    bool above_every_stored(std::uint64_t version) const noexcept;
    // Writes `batch`, whose data records have versions up to `max_version`, after raising
    // written_max_ and, when needed, adding a raised ceiling to the batch. RocksDB's status:
    // the caller names the write in the error only when there is one.
    rocksdb::Status write_data(rocksdb::WriteBatch& batch, std::uint64_t max_version);

    KeyStoreOptions options_;
    std::unique_ptr<rocksdb::DB> db_;
    // Owned; destroyed before db_ (RocksDB requires it).
    rocksdb::ColumnFamilyHandle* data_cf_;
    rocksdb::ColumnFamilyHandle* meta_cf_;
    // Per-key write serialization (see the top of this file), indexed by key id bits.
    std::array<std::mutex, kKeyStripes> stripes_;
    // Decoded records in front of data_cf_ (storage/record_cache.hpp); null when
    // options_.cache_bytes is 0. Every data write updates it under the stripes it holds.
    std::unique_ptr<RecordCache> cache_;
    // The version bound (see the top). open_bound_ is set once, before the store is shared.
    std::uint64_t open_bound_ = ~std::uint64_t{0};
    std::atomic<std::uint64_t> written_max_{0};
    std::mutex ceiling_mutex_;               // serializes raises of the persisted ceiling
    std::atomic<std::uint64_t> ceiling_{0};  // persisted (or being raised under the mutex)
    std::atomic<std::uint64_t> reads_skipped_{0};
};

}  // namespace chordkv::storage
