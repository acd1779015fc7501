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
// Every write goes through the WAL. With KeyStoreOptions::sync_writes the WAL is fsynced
// before a write returns, so an acknowledged write survives power loss; without it, it
// survives a process crash only.
//
// Errors: every public function reports expected failures as values, never exceptions.
//     invalid_argument  empty key or meta name, zero batch size, resume key outside the arc
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

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chord/node_id.hpp"
#include "chord/result.hpp"
#include "storage/record.hpp"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Snapshot;
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
};

// Default soft cap on one scan batch's key and value bytes: a handoff frame's worth.
inline constexpr std::size_t kScanBatchBytesMaxDefault = std::size_t{4} << 20;

class KeyStore;

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

    // A consistent read view for read(), get() and scan(). Never null.
    std::unique_ptr<Snapshot> snapshot() const;

    // RocksDB's estimate of the number of data keys (tombstones included); cheap, and may be
    // off by a large factor after many overwrites or deletes.
    Result<std::uint64_t> approximate_keys() const;

    const KeyStoreOptions& options() const noexcept { return options_; }

private:
    KeyStore(KeyStoreOptions options, std::unique_ptr<rocksdb::DB> db,
             rocksdb::ColumnFamilyHandle* data_cf, rocksdb::ColumnFamilyHandle* meta_cf);

    Status check_key(std::string_view key) const;
    Status check_value(std::string_view key, std::size_t value_bytes) const;
    Status check_meta(std::string_view name, std::size_t value_bytes) const;
    Status check_batch(const WriteBatch& batch) const;

    KeyStoreOptions options_;
    std::unique_ptr<rocksdb::DB> db_;
    // Owned; destroyed before db_ (RocksDB requires it).
    rocksdb::ColumnFamilyHandle* data_cf_;
    rocksdb::ColumnFamilyHandle* meta_cf_;
};

}  // namespace chordkv::storage
