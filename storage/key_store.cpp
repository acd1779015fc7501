#include "storage/key_store.hpp"

#include <openssl/evp.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <bitset>
#include <cassert>
#include <unordered_map>
#include <utility>

#include "storage/record_cache.hpp"

namespace chordkv::storage {

namespace {

constexpr const char* kMetaColumnFamily = "meta";
// The version bound (key_store.hpp, "Version bound"): the meta name of the persisted ceiling,
// the prefix of meta names reserved for the store, and how far above the highest version
// written a raise puts the ceiling (2^32: about 65 s of HLC time, chord/hlc.hpp).
constexpr std::string_view kMetaVersionCeiling = "storage.version_ceiling";
constexpr std::string_view kReservedMetaPrefix = "storage.";
constexpr std::uint64_t kVersionCeilingMargin = std::uint64_t{1} << 32;

// The ceiling's bytes: 8, little-endian.
std::string encode_u64(std::uint64_t v) {
    std::string out(8, '\0');
    for (std::size_t i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * i));
    return out;
}
std::uint64_t decode_u64(std::string_view bytes) {
    std::uint64_t v = 0;
    for (std::size_t i = 8; i-- > 0;) v = v << 8 | static_cast<std::uint8_t>(bytes[i]);
    return v;
}

// Raises `target` to at least `v`.
void raise_to(std::atomic<std::uint64_t>& target, std::uint64_t v) {
    std::uint64_t seen = target.load(std::memory_order_relaxed);
    while (seen < v && !target.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {
    }
}
// Bloom filter bits per key: ~1% false positives, so a get() of an absent key rarely reads
// an SST block.
constexpr double kBloomBitsPerKey = 10.0;

// Keeps RocksDB's own message (STYLE.md 7: the message is for people) after what we were
// doing. Corruption gets its own code because the remedy differs: repair, not retry.
Error from_rocksdb(const rocksdb::Status& status, const std::string& doing) {
    return Error(status.IsCorruption() ? Errc::corruption : Errc::storage_error,
                 doing + ": " + status.ToString());
}

rocksdb::Slice as_slice(std::string_view s) {
    return rocksdb::Slice(s.data(), s.size());
}

std::string id_prefix(const chord::NodeId& id) {
    return std::string(reinterpret_cast<const char*>(id.bytes().data()), id.bytes().size());
}

std::string too_large(const char* what, std::string_view key, std::size_t bytes,
                      const char* limit_name, std::size_t limit) {
    return std::string(what) + " for " + describe_key(key) + " is " + std::to_string(bytes) +
           " bytes, over " + limit_name + " (" + std::to_string(limit) + ")";
}

// A half-open range [lower, upper) of storage keys; nullopt is the start or end of the
// column family.
struct KeyRange {
    std::optional<std::string> lower;
    std::optional<std::string> upper;
};

// The key part of a storage key, without copying it; corruption as decode_data_key().
Result<std::string_view> data_key_view(std::string_view storage_key) {
    if (storage_key.size() <= chord::NodeId::kBytes) return decode_data_key(storage_key).error();
    return storage_key.substr(chord::NodeId::kBytes);
}

// Slices of a KeyRange's bounds for ReadOptions: they must outlive the iterator.
struct RangeBounds {
    rocksdb::Slice lower;
    rocksdb::Slice upper;
};

// An iterator over `range` of column family `cf`, positioned at its first key. It points into
// `range` and `bounds`, which must outlive it.
std::unique_ptr<rocksdb::Iterator> open_range(rocksdb::DB& db, rocksdb::ColumnFamilyHandle* cf,
                                              rocksdb::ReadOptions options, const KeyRange& range,
                                              RangeBounds& bounds) {
    options.iterate_lower_bound = nullptr;
    options.iterate_upper_bound = nullptr;
    if (range.lower) {
        bounds.lower = *range.lower;
        options.iterate_lower_bound = &bounds.lower;
    }
    if (range.upper) {
        bounds.upper = *range.upper;
        options.iterate_upper_bound = &bounds.upper;
    }
    std::unique_ptr<rocksdb::Iterator> it(db.NewIterator(options, cf));
    if (range.lower) {
        it->Seek(bounds.lower);
    } else {
        it->SeekToFirst();
    }
    return it;
}

// The stripe of the key with id `key_id`. Key ids are SHA-1 outputs, so any bits spread keys
// evenly.
std::size_t stripe_index(const chord::NodeId& key_id) {
    return static_cast<std::size_t>(key_id.high64() % kKeyStripes);
}

using StripeSet = std::bitset<kKeyStripes>;

// Holds a set of stripes, taken in ascending index order. Every multi-stripe writer takes
// them in that one order and single-key writers take one stripe, so no cycle of waiters (and
// so no deadlock) can form.
class StripeLocks {
public:
    StripeLocks(std::array<std::mutex, kKeyStripes>& stripes, const StripeSet& wanted)
        : stripes_(stripes), held_(wanted) {
        for (std::size_t i = 0; i < kKeyStripes; ++i) {
            if (held_[i]) stripes_[i].lock();
        }
    }
    ~StripeLocks() {
        for (std::size_t i = kKeyStripes; i-- > 0;) {
            if (held_[i]) stripes_[i].unlock();
        }
    }
    StripeLocks(const StripeLocks&) = delete;
    StripeLocks& operator=(const StripeLocks&) = delete;

private:
    std::array<std::mutex, kKeyStripes>& stripes_;
    StripeSet held_;
};

// The version and tombstone flag of stored record bytes, without copying a live value (the
// returned Record's value is empty). Reports the same corruption as decode_record.
// The storage key ranges holding the key ids of the arc (a, b]. Key id k lies in (a, b] iff
// the storage key lies in [prefix(a+1), prefix(b+1)): every storage key starting with id k
// sorts at or after the bare 20-byte prefix(k) and before prefix(k+1). b == max has no b+1,
// so that range is open-ended.
//   a <  b:  [a+1, b+1)
//   a >= b:  [a+1, end) then [begin, b+1)    (the first is empty when a == max)
std::vector<KeyRange> arc_ranges(const chord::NodeId& a, const chord::NodeId& b) {
    const chord::NodeId max = chord::NodeId::max();
    std::vector<KeyRange> ranges;
    std::optional<std::string> upper;
    if (b != max) upper = id_prefix(b.next());
    if (a < b) {
        ranges.push_back({id_prefix(a.next()), upper});
    } else {
        if (a != max) ranges.push_back({id_prefix(a.next()), std::nullopt});
        ranges.push_back({std::nullopt, upper});
    }
    return ranges;
}

Result<Record> decode_record_header(std::string_view bytes, std::string_view key) {
    if (bytes.size() <= kRecordHeaderBytes) return decode_record(bytes, key);
    auto header = decode_record(bytes.substr(0, kRecordHeaderBytes), key);
    // A tombstone must not carry value bytes: decode it whole to report them.
    if (header && header->tombstone) return decode_record(bytes, key);
    return header;
}

// Incremental SHA-256 (OpenSSL EVP). Every call returns false only when OpenSSL fails, which
// happens on allocation failure.
class Sha256 {
public:
    Sha256() : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {}
    bool reset() { return ctx_ && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1; }
    bool update(const void* data, std::size_t bytes) {
        return EVP_DigestUpdate(ctx_.get(), data, bytes) == 1;
    }
    bool finish(std::array<std::uint8_t, 32>& out) {
        unsigned int len = 0;
        return EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) == 1 && len == out.size();
    }

private:
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

void append_be64(std::string& out, std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) {
        out.push_back(static_cast<char>((v >> shift) & 0xff));
    }
}

// --- digest bucket arithmetic ------------------------------------------------------------
//
// Bucket i of an arc of length L (ids) starts at offset ceil(i·L/B) from the arc's first id.
// i·L needs up to 172 bits (B <= 4096, L <= 2^160), so offsets are computed in a 192-bit
// integer: six 32-bit limbs, least significant first.
using Wide = std::array<std::uint32_t, 6>;

Wide to_wide(const chord::NodeId& id) {
    Wide w{};
    const auto& bytes = id.bytes();  // big-endian
    for (std::size_t i = 0; i < chord::NodeId::kBytes; ++i) {
        const std::size_t bit = (chord::NodeId::kBytes - 1 - i) * 8;
        w[bit / 32] |= std::uint32_t{bytes[i]} << (bit % 32);
    }
    return w;
}

// Requires w < 2^160.
chord::NodeId from_wide(const Wide& w) {
    assert(w[5] == 0);
    chord::NodeId::Bytes bytes{};
    for (std::size_t i = 0; i < chord::NodeId::kBytes; ++i) {
        const std::size_t bit = (chord::NodeId::kBytes - 1 - i) * 8;
        bytes[i] = static_cast<std::uint8_t>(w[bit / 32] >> (bit % 32));
    }
    return chord::NodeId(bytes);
}

// Number of ids in (from, to]: 2^160 for the whole ring (from == to).
Wide arc_length(const chord::NodeId& from, const chord::NodeId& to) {
    if (from == to) {
        Wide whole{};
        whole[5] = 1;
        return whole;
    }
    return to_wide(chord::distance(from, to));
}

// ceil(i·length / buckets), for i <= buckets <= kDigestBucketsMax and length <= 2^160.
Wide bucket_start(const Wide& length, std::size_t i, std::size_t buckets) {
    const auto factor = static_cast<std::uint64_t>(i);
    const auto divisor = static_cast<std::uint64_t>(buckets);
    Wide product{};
    std::uint64_t carry = divisor - 1;  // adding buckets - 1 before dividing rounds up
    for (std::size_t limb = 0; limb < product.size(); ++limb) {
        const std::uint64_t p = std::uint64_t{length[limb]} * factor + carry;
        product[limb] = static_cast<std::uint32_t>(p);
        carry = p >> 32;
    }
    assert(carry == 0);
    Wide quotient{};
    std::uint64_t remainder = 0;
    for (std::size_t limb = product.size(); limb-- > 0;) {
        const std::uint64_t current = (remainder << 32) | product[limb];
        quotient[limb] = static_cast<std::uint32_t>(current / divisor);
        remainder = current % divisor;
    }
    return quotient;
}

bool less_wide(const Wide& a, const Wide& b) {
    return std::lexicographical_compare(a.rbegin(), a.rend(), b.rbegin(), b.rend());
}

}  // namespace

std::optional<std::pair<chord::NodeId, chord::NodeId>> digest_bucket_arc(
    const chord::NodeId& from_exclusive, const chord::NodeId& to_inclusive, std::size_t buckets,
    std::size_t index) {
    if (buckets == 0 || buckets > kDigestBucketsMax || index >= buckets) return std::nullopt;
    const Wide length = arc_length(from_exclusive, to_inclusive);
    const Wide start = bucket_start(length, index, buckets);
    const Wide end = bucket_start(length, index + 1, buckets);
    if (!less_wide(start, end)) return std::nullopt;
    // The last bucket ends at the arc's end, which for the whole ring is from + 2^160 = from.
    const chord::NodeId last =
        index + 1 == buckets ? to_inclusive : from_exclusive + from_wide(end);
    return std::make_pair(from_exclusive + from_wide(start), last);
}

namespace {

// The cache side of one data write, created under the stripes of its keys: add() each key
// before the RocksDB write, commit() once it succeeded. Keys not committed — an error return
// on either side of the RocksDB write — are dropped from the cache by the destructor, so no
// return path leaves an entry pending or stale. Declare it after the stripe locks, so it ends
// while they are still held. A null cache makes every call a no-op.
class CacheWriteScope {
public:
    explicit CacheWriteScope(RecordCache* cache) : cache_(cache) {}
    CacheWriteScope(const CacheWriteScope&) = delete;
    CacheWriteScope& operator=(const CacheWriteScope&) = delete;
    ~CacheWriteScope() { end_all(/*written=*/false); }

    void add(const RecordCache::Write& write) {
        if (cache_ == nullptr) return;
        cache_->begin_write(write.key);
        if (first_) {
            more_.push_back(write);
        } else {
            first_ = write;
        }
    }

    void commit() { end_all(/*written=*/true); }

private:
    void end_all(bool written) {
        if (!first_) return;
        for (const RecordCache::Write& write : more_) cache_->end_write(write, written);
        more_.clear();
        cache_->end_write(*first_, written);
        first_.reset();
    }

    RecordCache* cache_;
    // Most writes are of one key: that one needs no allocation.
    std::optional<RecordCache::Write> first_;
    std::vector<RecordCache::Write> more_;
};

}  // namespace

// --- Snapshot ---------------------------------------------------------------------------

Snapshot::~Snapshot() {
    db_->ReleaseSnapshot(snapshot_);
}

// --- WriteBatch -------------------------------------------------------------------------

void WriteBatch::put(std::string_view key, std::string_view value, std::uint64_t version) {
    ops_.push_back(Op{Kind::put, std::string(key), std::string(value), version});
    bytes_ += key.size() + value.size();
}

void WriteBatch::del(std::string_view key, std::uint64_t version) {
    ops_.push_back(Op{Kind::del, std::string(key), {}, version});
    bytes_ += key.size();
}

void WriteBatch::put_meta(std::string_view name, std::string_view bytes) {
    ops_.push_back(Op{Kind::put_meta, std::string(name), std::string(bytes), 0});
    bytes_ += name.size() + bytes.size();
}

void WriteBatch::del_meta(std::string_view name) {
    ops_.push_back(Op{Kind::del_meta, std::string(name), {}, 0});
    bytes_ += name.size();
}

// --- KeyStore ---------------------------------------------------------------------------

Result<std::unique_ptr<KeyStore>> KeyStore::open(const std::string& path,
                                                 const KeyStoreOptions& options) {
    rocksdb::DBOptions db_options;
    db_options.create_if_missing = options.create_if_missing;
    // "meta" is ours to create: an existing data directory from an older build gains it.
    db_options.create_missing_column_families = true;
    // The meta column family is written at startup and seldom after, so its memtable is never
    // flushed and pins every WAL file: at 1 M keys the WAL was 159 MB next to 44 MB of SST
    // files. A bound on the WAL makes RocksDB flush the column family holding the oldest one.
    db_options.max_total_wal_size = 4 * options.write_buffer_bytes;

    rocksdb::BlockBasedTableOptions table_options;
    table_options.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
    table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomBitsPerKey));

    rocksdb::ColumnFamilyOptions cf_options;
    cf_options.write_buffer_size = options.write_buffer_bytes;
    cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));

    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors{
        {rocksdb::kDefaultColumnFamilyName, cf_options},
        {kMetaColumnFamily, cf_options},
    };
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw_db = nullptr;
    rocksdb::Status status = rocksdb::DB::Open(db_options, path, descriptors, &handles, &raw_db);
    if (!status.ok()) return from_rocksdb(status, "opening key store at " + path);
    // Open returns one handle per descriptor, in order, whenever it succeeds.
    assert(handles.size() == descriptors.size());
    std::unique_ptr<KeyStore> store(
        new KeyStore(options, std::unique_ptr<rocksdb::DB>(raw_db), handles[0], handles[1]));
    if (auto loaded = store->load_version_ceiling(); !loaded) return loaded.error();
    return store;
}

Status KeyStore::load_version_ceiling() {
    std::string bytes;
    rocksdb::Status status =
        db_->Get(rocksdb::ReadOptions(), meta_cf_, as_slice(kMetaVersionCeiling), &bytes);
    if (status.ok()) {
        if (bytes.size() != 8) {
            return Error(Errc::corruption, "meta " + std::string(kMetaVersionCeiling) + " has " +
                                               std::to_string(bytes.size()) + " bytes, not 8");
        }
        const std::uint64_t ceiling = decode_u64(bytes);
        open_bound_ = ceiling;
        ceiling_.store(ceiling);
        return {};
    }
    if (!status.IsNotFound()) return from_rocksdb(status, "reading the version ceiling");
    // No ceiling: a new store, or one an older build wrote. Its highest version bounds it.
    std::uint64_t highest = 0;
    rocksdb::ReadOptions read_options;
    read_options.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, data_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
        auto header = decode_record_header(it->value().ToStringView(), "(version scan)");
        if (!header) {
            // A record that does not decode has no version to bound: never skip a read in
            // this store (reads of that key report the corruption, as before).
            highest = ~std::uint64_t{0};
            break;
        }
        highest = std::max(highest, header->version);
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), "scanning for the highest version");
    open_bound_ = highest;
    if (highest == 0) return {};  // nothing stored: the first write sets the ceiling
    // Persisted before any write can go above it; until then the bound is the scan's result.
    rocksdb::WriteBatch batch;
    status = write_data(batch, highest);
    if (!status.ok()) return from_rocksdb(status, "persisting the version ceiling");
    return {};
}

bool KeyStore::above_every_stored(std::uint64_t version) const noexcept {
    return version > open_bound_ && version > written_max_.load(std::memory_order_relaxed);
}

rocksdb::Status KeyStore::write_data(rocksdb::WriteBatch& batch, std::uint64_t max_version) {
    rocksdb::WriteOptions write_options;
    write_options.sync = options_.sync_writes;
    // Raised first: a write that reports failure may still have reached RocksDB.
    raise_to(written_max_, max_version);
    rocksdb::Status status;
    if (max_version <= ceiling_.load(std::memory_order_acquire)) {
        status = db_->Write(write_options, &batch);
    } else {
        // Raises are serialized so that the persisted ceiling only grows.
        const std::lock_guard<std::mutex> lock(ceiling_mutex_);
        std::uint64_t ceiling = ceiling_.load(std::memory_order_relaxed);
        if (max_version > ceiling) {
            ceiling = max_version > ~std::uint64_t{0} - kVersionCeilingMargin
                          ? ~std::uint64_t{0}
                          : max_version + kVersionCeilingMargin;
            status = batch.Put(meta_cf_, as_slice(kMetaVersionCeiling), encode_u64(ceiling));
            if (!status.ok()) return status;
        }
        status = db_->Write(write_options, &batch);
        if (status.ok()) ceiling_.store(ceiling, std::memory_order_release);
    }
    return status;
}

KeyStore::KeyStore(KeyStoreOptions options, std::unique_ptr<rocksdb::DB> db,
                   rocksdb::ColumnFamilyHandle* data_cf, rocksdb::ColumnFamilyHandle* meta_cf)
    : options_(std::move(options)), db_(std::move(db)), data_cf_(data_cf), meta_cf_(meta_cf) {
    if (options_.cache_bytes > 0) cache_ = std::make_unique<RecordCache>(options_.cache_bytes);
}

KeyStore::~KeyStore() {
    // Failures here cannot be reported and do not lose acknowledged writes (they are in the
    // WAL), so the statuses are dropped.
    db_->DestroyColumnFamilyHandle(meta_cf_).PermitUncheckedError();
    db_->DestroyColumnFamilyHandle(data_cf_).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
}

Status KeyStore::check_key(std::string_view key) const {
    if (key.empty()) return Error(Errc::invalid_argument, "empty key");
    if (key.size() > options_.key_bytes_max) {
        return Error(Errc::too_large,
                     too_large("key", key, key.size(), "key_bytes_max", options_.key_bytes_max));
    }
    return {};
}

Status KeyStore::check_value(std::string_view key, std::size_t value_bytes) const {
    if (value_bytes > options_.value_bytes_max) {
        return Error(Errc::too_large, too_large("value", key, value_bytes, "value_bytes_max",
                                                options_.value_bytes_max));
    }
    return {};
}

Status KeyStore::check_meta(std::string_view name, std::size_t value_bytes) const {
    if (name.empty()) return Error(Errc::invalid_argument, "empty meta name");
    if (name.substr(0, kReservedMetaPrefix.size()) == kReservedMetaPrefix) {
        return Error(Errc::invalid_argument, "meta name " + describe_key(name) + " starts with \"" +
                                                 std::string(kReservedMetaPrefix) +
                                                 "\", which the key store reserves");
    }
    if (name.size() > options_.key_bytes_max) {
        return Error(Errc::too_large, too_large("meta name", name, name.size(), "key_bytes_max",
                                                options_.key_bytes_max));
    }
    if (value_bytes > options_.value_bytes_max) {
        return Error(Errc::too_large, too_large("meta value", name, value_bytes, "value_bytes_max",
                                                options_.value_bytes_max));
    }
    return {};
}

Status KeyStore::check_batch(const WriteBatch& batch) const {
    if (batch.bytes() > options_.batch_bytes_max) {
        return Error(Errc::too_large, "write batch of " + std::to_string(batch.size()) +
                                          " operations is " + std::to_string(batch.bytes()) +
                                          " bytes, over batch_bytes_max (" +
                                          std::to_string(options_.batch_bytes_max) + ")");
    }
    for (const auto& op : batch.ops_) {
        Status checked;
        switch (op.kind) {
            case WriteBatch::Kind::put:
            case WriteBatch::Kind::del:
                checked = check_key(op.key);
                if (checked) checked = check_value(op.key, op.value.size());
                break;
            case WriteBatch::Kind::put_meta:
            case WriteBatch::Kind::del_meta:
                checked = check_meta(op.key, op.value.size());
                break;
        }
        if (!checked) return checked;
    }
    return {};
}

Result<Record> KeyStore::read(std::string_view key, const Snapshot* snapshot) const {
    if (auto checked = check_key(key); !checked) return checked.error();
    // A snapshot is a past view; the cache holds only the present.
    if (cache_ && snapshot == nullptr) return read_cached(key);
    rocksdb::ReadOptions read_options;
    if (snapshot != nullptr) {
        assert(snapshot->owner_ == this);
        read_options.snapshot = snapshot->snapshot_;
    }
    rocksdb::PinnableSlice bytes;
    const std::string storage_key = encode_data_key(key);
    rocksdb::Status status = db_->Get(read_options, data_cf_, storage_key, &bytes);
    if (status.IsNotFound()) return Error(Errc::not_found, "key " + describe_key(key));
    if (!status.ok()) return from_rocksdb(status, "reading key " + describe_key(key));
    return decode_record(bytes.ToStringView(), key);
}

chord::NodeId KeyStore::key_id(std::string_view key) const {
    if (cache_) {
        if (const std::optional<chord::NodeId> cached = cache_->key_id(key)) return *cached;
    }
    return chord::NodeId::hash(key);
}

void KeyStore::prefetch(const std::vector<std::string_view>& keys) const {
    if (cache_) cache_->prefetch(keys);
}

Result<Record> KeyStore::read_cached(std::string_view key) const {
    RecordCache::Lookup cached = cache_->lookup(key);
    if (cached.hit) {
        if (!cached.record) return Error(Errc::not_found, "key " + describe_key(key));
        return std::move(*cached.record);
    }
    // What the Get finds, "absent" included, is cached unless a write raced it (the fill
    // protocol in storage/record_cache.hpp).
    const chord::NodeId key_id = chord::NodeId::hash(key);
    rocksdb::PinnableSlice bytes;
    rocksdb::Status status =
        db_->Get(rocksdb::ReadOptions(), data_cf_, encode_data_key(key_id, key), &bytes);
    if (status.IsNotFound()) {
        cache_->fill(key, key_id, cached.fill_token, nullptr);
        return Error(Errc::not_found, "key " + describe_key(key));
    }
    if (!status.ok()) return from_rocksdb(status, "reading key " + describe_key(key));
    auto record = decode_record(bytes.ToStringView(), key);
    if (record) cache_->fill(key, key_id, cached.fill_token, &*record);
    return record;
}

Result<std::string> KeyStore::get(std::string_view key, const Snapshot* snapshot) const {
    auto record = read(key, snapshot);
    if (!record) return record.error();
    if (record->tombstone) {
        return Error(Errc::not_found, "key " + describe_key(key) + " was deleted at version " +
                                          std::to_string(record->version));
    }
    return std::move(record->value);
}

Status KeyStore::put(std::string_view key, std::string_view value, std::uint64_t version) {
    if (auto checked = check_key(key); !checked) return checked;
    if (auto checked = check_value(key, value.size()); !checked) return checked;
    const chord::NodeId key_id = chord::NodeId::hash(key);
    rocksdb::WriteBatch batch;
    rocksdb::Status status = batch.Put(data_cf_, encode_data_key(key_id, key),
                                       encode_record(version, /*tombstone=*/false, value));
    if (!status.ok()) return from_rocksdb(status, "writing key " + describe_key(key));
    std::lock_guard<std::mutex> lock(stripes_[stripe_index(key_id)]);
    CacheWriteScope cache_write(cache_.get());
    cache_write.add({key, /*present=*/true, version, /*tombstone=*/false, value,
                     /*allocate=*/true, key_id});
    status = write_data(batch, version);
    if (!status.ok()) return from_rocksdb(status, "writing key " + describe_key(key));
    cache_write.commit();
    return {};
}

Status KeyStore::del(std::string_view key, std::uint64_t version) {
    if (auto checked = check_key(key); !checked) return checked;
    const chord::NodeId key_id = chord::NodeId::hash(key);
    rocksdb::WriteBatch batch;
    rocksdb::Status status = batch.Put(data_cf_, encode_data_key(key_id, key),
                                       encode_record(version, /*tombstone=*/true, {}));
    if (!status.ok()) return from_rocksdb(status, "deleting key " + describe_key(key));
    std::lock_guard<std::mutex> lock(stripes_[stripe_index(key_id)]);
    CacheWriteScope cache_write(cache_.get());
    cache_write.add(
        {key, /*present=*/true, version, /*tombstone=*/true, {}, /*allocate=*/true, key_id});
    status = write_data(batch, version);
    if (!status.ok()) return from_rocksdb(status, "deleting key " + describe_key(key));
    cache_write.commit();
    return {};
}

Status KeyStore::write(const WriteBatch& batch) {
    if (auto checked = check_batch(batch); !checked) return checked;
    rocksdb::WriteBatch rocks_batch;
    rocksdb::Status status;
    StripeSet stripes;
    std::uint64_t max_version = 0;
    for (const auto& op : batch.ops_) {
        const bool data = op.kind == WriteBatch::Kind::put || op.kind == WriteBatch::Kind::del;
        const chord::NodeId key_id = data ? chord::NodeId::hash(op.key) : chord::NodeId();
        if (data) {
            stripes.set(stripe_index(key_id));
            max_version = std::max(max_version, op.version);
        }
        switch (op.kind) {
            case WriteBatch::Kind::put:
                status = rocks_batch.Put(data_cf_, encode_data_key(key_id, op.key),
                                         encode_record(op.version, /*tombstone=*/false, op.value));
                break;
            case WriteBatch::Kind::del:
                status = rocks_batch.Put(data_cf_, encode_data_key(key_id, op.key),
                                         encode_record(op.version, /*tombstone=*/true, {}));
                break;
            case WriteBatch::Kind::put_meta:
                status = rocks_batch.Put(meta_cf_, op.key, op.value);
                break;
            case WriteBatch::Kind::del_meta:
                status = rocks_batch.Delete(meta_cf_, op.key);
                break;
        }
        if (!status.ok()) return from_rocksdb(status, "building write batch");
    }
    const StripeLocks locks(stripes_, stripes);
    CacheWriteScope cache_writes(cache_.get());
    if (cache_) {
        // One cache write per key, with its last operation's record (the one RocksDB keeps).
        // Ending a write with an earlier operation's record would serve that record, for a
        // moment or, if it ended last, until the key is written again.
        std::unordered_map<std::string_view, const WriteBatch::Op*> last;
        for (const auto& op : batch.ops_) {
            if (op.kind == WriteBatch::Kind::put || op.kind == WriteBatch::Kind::del) {
                last[op.key] = &op;
            }
        }
        for (const auto& [key, op] : last) {
            const bool tombstone = op->kind == WriteBatch::Kind::del;
            cache_writes.add({key,
                              /*present=*/true,
                              op->version,
                              tombstone,
                              tombstone ? std::string_view() : std::string_view(op->value),
                              /*allocate=*/false,
                              {}});
        }
    }
    status = write_data(rocks_batch, max_version);
    if (!status.ok()) {
        return from_rocksdb(status,
                            "writing batch of " + std::to_string(batch.size()) + " operations");
    }
    cache_writes.commit();
    return {};
}

Result<std::optional<Record>> KeyStore::stored_record(const std::string& storage_key,
                                                      std::string_view key, bool with_value) const {
    rocksdb::PinnableSlice bytes;
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), data_cf_, storage_key, &bytes);
    if (status.IsNotFound()) return std::optional<Record>();
    if (!status.ok()) return from_rocksdb(status, "reading key " + describe_key(key));
    auto stored = with_value ? decode_record(bytes.ToStringView(), key)
                             : decode_record_header(bytes.ToStringView(), key);
    if (!stored) return stored.error();
    return std::optional<Record>(std::move(*stored));
}

Result<bool> KeyStore::newer_than_stored(const std::string& storage_key, std::string_view key,
                                         std::uint64_t version) const {
    if (cache_) {
        const RecordCache::Version cached = cache_->version(key);
        if (cached.hit) return !cached.present || version > cached.version;
    }
    auto stored = stored_record(storage_key, key, /*with_value=*/false);
    if (!stored) return stored.error();
    return !*stored || version > (*stored)->version;
}

Result<bool> KeyStore::apply(std::string_view key, const Record& record) {
    if (auto checked = check_key(key); !checked) return checked.error();
    if (!record.tombstone) {
        if (auto checked = check_value(key, record.value.size()); !checked) {
            return checked.error();
        }
    }
    const chord::NodeId key_id = this->key_id(key);
    const std::string storage_key = encode_data_key(key_id, key);
    std::lock_guard<std::mutex> lock(stripes_[stripe_index(key_id)]);
    if (above_every_stored(record.version)) {
        // Newer than anything stored (the version bound): no read needed.
        reads_skipped_.fetch_add(1, std::memory_order_relaxed);
    } else if (cache_) {
        const RecordCache::Version cached = cache_->version(key);
        if (cached.hit) {
            if (cached.present && record.version <= cached.version) return false;
        } else {
            // Read the whole record, so a stale apply (a replica write arriving again) leaves
            // the key cached and the next one is a hash lookup.
            auto stored = stored_record(storage_key, key, /*with_value=*/true);
            if (!stored) return stored.error();
            if (*stored && record.version <= (*stored)->version) {
                cache_->fill_locked(key, key_id, **stored);
                return false;
            }
        }
    } else {
        auto newer = newer_than_stored(storage_key, key, record.version);
        if (!newer || !*newer) return newer;
    }
    const std::string_view value = record.tombstone ? std::string_view() : record.value;
    rocksdb::WriteBatch batch;
    rocksdb::Status status =
        batch.Put(data_cf_, storage_key, encode_record(record.version, record.tombstone, value));
    if (!status.ok()) return from_rocksdb(status, "applying key " + describe_key(key));
    CacheWriteScope cache_write(cache_.get());
    cache_write.add({key, /*present=*/true, record.version, record.tombstone, value,
                     /*allocate=*/true, key_id});
    status = write_data(batch, record.version);
    if (!status.ok()) return from_rocksdb(status, "applying key " + describe_key(key));
    cache_write.commit();
    return true;
}

Result<std::size_t> KeyStore::apply_batch(const std::vector<Entry>& entries, bool cache_new_keys) {
    std::size_t bytes = 0;
    for (const Entry& entry : entries) {
        if (auto checked = check_key(entry.key); !checked) return checked.error();
        const std::size_t value_bytes = entry.record.tombstone ? 0 : entry.record.value.size();
        if (auto checked = check_value(entry.key, value_bytes); !checked) return checked.error();
        // key_id() answers from the record cache when it holds the key (its id was hashed
        // when it was cached), so a batch of cached keys costs no SHA-1 here.
        if (entry.key_id != key_id(entry.key)) {
            return Error(Errc::invalid_argument, "entry for key " + describe_key(entry.key) +
                                                     " carries key id " + entry.key_id.short_hex() +
                                                     ", not the key's hash");
        }
        bytes += entry.key.size() + value_bytes;
    }
    if (bytes > options_.batch_bytes_max) {
        return Error(Errc::too_large, "apply batch of " + std::to_string(entries.size()) +
                                          " entries is " + std::to_string(bytes) +
                                          " bytes, over batch_bytes_max (" +
                                          std::to_string(options_.batch_bytes_max) + ")");
    }
    if (entries.empty()) return std::size_t{0};

    // One candidate per key: the highest version in `entries` (the first of equal ones, which
    // are the same write), as RocksDB reads below do not see the batch being built.
    struct Candidate {
        std::string storage_key;
        const Entry* entry;
    };
    std::vector<Candidate> candidates;
    candidates.reserve(entries.size());
    StripeSet stripes;
    for (const Entry& entry : entries) {
        candidates.push_back({encode_data_key(entry.key_id, entry.key), &entry});
        stripes.set(stripe_index(entry.key_id));
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Candidate& a, const Candidate& b) {
                         if (a.storage_key != b.storage_key) return a.storage_key < b.storage_key;
                         return a.entry->record.version > b.entry->record.version;
                     });
    candidates.erase(std::unique(candidates.begin(), candidates.end(),
                                 [](const Candidate& a, const Candidate& b) {
                                     return a.storage_key == b.storage_key;
                                 }),
                     candidates.end());

    // Every stripe stays held from the first read until the batch is written: releasing a
    // key's stripe before the write would let a newer apply() land in between and then be
    // overwritten by this older batch. Stripes are taken in ascending order (StripeLocks).
    const StripeLocks locks(stripes_, stripes);
    // The stored versions: from the cache where it knows the key, the rest in one MultiGet
    // (sorted keys share index and filter work; a join applies its arc this way).
    std::vector<std::optional<std::uint64_t>> stored(candidates.size());  // nullopt: absent
    std::vector<std::size_t> misses;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        if (above_every_stored(candidates[i].entry->record.version)) {
            reads_skipped_.fetch_add(1, std::memory_order_relaxed);
            continue;  // newer than anything stored (the version bound): written unread
        }
        if (cache_) {
            const RecordCache::Version cached = cache_->version(candidates[i].entry->key);
            if (cached.hit) {
                if (cached.present) stored[i] = cached.version;
                continue;
            }
        }
        misses.push_back(i);
    }
    if (!misses.empty()) {
        std::vector<rocksdb::Slice> keys;
        keys.reserve(misses.size());
        for (std::size_t i : misses) keys.emplace_back(candidates[i].storage_key);
        std::vector<rocksdb::PinnableSlice> values(misses.size());
        std::vector<rocksdb::Status> statuses(misses.size());
        db_->MultiGet(rocksdb::ReadOptions(), data_cf_, misses.size(), keys.data(), values.data(),
                      statuses.data(), /*sorted_input=*/true);
        for (std::size_t m = 0; m < misses.size(); ++m) {
            const Entry& entry = *candidates[misses[m]].entry;
            if (statuses[m].IsNotFound()) continue;
            if (!statuses[m].ok()) {
                return from_rocksdb(statuses[m], "reading key " + describe_key(entry.key));
            }
            auto header = decode_record_header(values[m].ToStringView(), entry.key);
            if (!header) return header.error();
            stored[misses[m]] = header->version;
        }
    }
    CacheWriteScope cache_writes(cache_.get());
    rocksdb::WriteBatch rocks_batch;
    std::size_t written = 0;
    std::uint64_t max_version = 0;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        const Candidate& candidate = candidates[i];
        const Entry& entry = *candidate.entry;
        if (stored[i] && entry.record.version <= *stored[i]) continue;
        const std::string_view value =
            entry.record.tombstone ? std::string_view() : std::string_view(entry.record.value);
        rocksdb::Status status =
            rocks_batch.Put(data_cf_, candidate.storage_key,
                            encode_record(entry.record.version, entry.record.tombstone, value));
        if (!status.ok()) return from_rocksdb(status, "building apply batch");
        cache_writes.add({entry.key, /*present=*/true, entry.record.version, entry.record.tombstone,
                          value, /*allocate=*/cache_new_keys, entry.key_id});
        max_version = std::max(max_version, entry.record.version);
        ++written;
    }
    if (written == 0) return written;
    const rocksdb::Status status = write_data(rocks_batch, max_version);
    if (!status.ok()) {
        return from_rocksdb(status, "writing apply batch of " + std::to_string(written) + " keys");
    }
    cache_writes.commit();
    return written;
}

Result<std::size_t> KeyStore::erase_unchanged(const std::vector<Entry>& entries) {
    if (entries.empty()) return std::size_t{0};
    StripeSet stripes;
    for (const Entry& entry : entries) stripes.set(stripe_index(entry.key_id));
    std::vector<std::string> storage_keys;
    storage_keys.reserve(entries.size());
    for (const Entry& entry : entries) {
        storage_keys.push_back(encode_data_key(entry.key_id, entry.key));
    }
    // Under the stripes, an entry still at the version it was read at cannot change until
    // the batch is written. One MultiGet reads them all.
    const StripeLocks locks(stripes_, stripes);
    std::vector<rocksdb::Slice> keys(storage_keys.begin(), storage_keys.end());
    std::vector<rocksdb::PinnableSlice> values(entries.size());
    std::vector<rocksdb::Status> statuses(entries.size());
    db_->MultiGet(rocksdb::ReadOptions(), data_cf_, entries.size(), keys.data(), values.data(),
                  statuses.data());
    CacheWriteScope cache_writes(cache_.get());
    rocksdb::WriteBatch rocks_batch;
    std::size_t erased = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const Entry& entry = entries[i];
        if (statuses[i].IsNotFound()) continue;
        if (!statuses[i].ok()) {
            return from_rocksdb(statuses[i], "reading key " + describe_key(entry.key));
        }
        auto stored = decode_record_header(values[i].ToStringView(), entry.key);
        if (!stored) return stored.error();
        if (stored->version != entry.record.version) continue;
        rocksdb::Status status = rocks_batch.Delete(data_cf_, storage_keys[i]);
        if (!status.ok()) return from_rocksdb(status, "building erase batch");
        cache_writes.add({entry.key, /*present=*/false, 0, false, {}, /*allocate=*/false, {}});
        ++erased;
    }
    if (erased == 0) return std::size_t{0};
    rocksdb::WriteOptions write_options;
    write_options.sync = options_.sync_writes;
    rocksdb::Status status = db_->Write(write_options, &rocks_batch);
    if (!status.ok()) return from_rocksdb(status, "erasing copies");
    cache_writes.commit();
    return erased;
}

Result<std::size_t> KeyStore::purge_tombstones(std::uint64_t version_before, std::size_t keys_max) {
    if (keys_max == 0) return Error(Errc::invalid_argument, "purge keys_max is 0");

    // Pass 1, without locks: find up to keys_max candidates.
    struct Candidate {
        std::string storage_key;
        DataKey data_key;
    };
    std::vector<Candidate> candidates;
    StripeSet stripes;
    {
        rocksdb::ReadOptions read_options;
        read_options.fill_cache = false;  // a sweep over everything; keep the hot keys cached
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, data_cf_));
        for (it->SeekToFirst(); it->Valid() && candidates.size() < keys_max; it->Next()) {
            auto data_key = decode_data_key(it->key().ToStringView());
            if (!data_key) return data_key.error();
            auto record = decode_record_header(it->value().ToStringView(), data_key->key);
            if (!record) return record.error();
            if (!record->tombstone || record->version >= version_before) continue;
            stripes.set(stripe_index(data_key->key_id));
            candidates.push_back({it->key().ToString(), std::move(*data_key)});
        }
        if (!it->status().ok()) return from_rocksdb(it->status(), "scanning for tombstones");
    }
    if (candidates.empty()) return std::size_t{0};

    // Pass 2, under the candidates' stripes: a candidate may have been overwritten since pass
    // 1, so delete only what is still an old tombstone.
    const StripeLocks locks(stripes_, stripes);
    CacheWriteScope cache_writes(cache_.get());
    rocksdb::WriteBatch rocks_batch;
    std::size_t purged = 0;
    for (const Candidate& candidate : candidates) {
        rocksdb::PinnableSlice bytes;
        rocksdb::Status status =
            db_->Get(rocksdb::ReadOptions(), data_cf_, candidate.storage_key, &bytes);
        if (status.IsNotFound()) continue;
        if (!status.ok()) {
            return from_rocksdb(status, "reading key " + describe_key(candidate.data_key.key));
        }
        auto record = decode_record_header(bytes.ToStringView(), candidate.data_key.key);
        if (!record) return record.error();
        if (!record->tombstone || record->version >= version_before) continue;
        status = rocks_batch.Delete(data_cf_, candidate.storage_key);
        if (!status.ok()) return from_rocksdb(status, "building purge batch");
        cache_writes.add(
            {candidate.data_key.key, /*present=*/false, 0, false, {}, /*allocate=*/false, {}});
        ++purged;
    }
    if (purged == 0) return purged;
    rocksdb::WriteOptions write_options;
    write_options.sync = options_.sync_writes;
    rocksdb::Status status = db_->Write(write_options, &rocks_batch);
    if (!status.ok()) {
        return from_rocksdb(status, "purging " + std::to_string(purged) + " tombstones");
    }
    cache_writes.commit();
    return purged;
}

Status KeyStore::put_meta(std::string_view name, std::string_view bytes) {
    if (auto checked = check_meta(name, bytes.size()); !checked) return checked;
    rocksdb::WriteOptions write_options;
    write_options.sync = options_.sync_writes;
    rocksdb::Status status = db_->Put(write_options, meta_cf_, as_slice(name), as_slice(bytes));
    if (!status.ok()) return from_rocksdb(status, "writing meta " + describe_key(name));
    return {};
}

Result<std::string> KeyStore::get_meta(std::string_view name) const {
    if (auto checked = check_meta(name, 0); !checked) return checked.error();
    std::string bytes;
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), meta_cf_, as_slice(name), &bytes);
    if (status.IsNotFound()) return Error(Errc::not_found, "meta " + describe_key(name));
    if (!status.ok()) return from_rocksdb(status, "reading meta " + describe_key(name));
    return bytes;
}

Status KeyStore::del_meta(std::string_view name) {
    if (auto checked = check_meta(name, 0); !checked) return checked;
    rocksdb::WriteOptions write_options;
    write_options.sync = options_.sync_writes;
    rocksdb::Status status = db_->Delete(write_options, meta_cf_, as_slice(name));
    if (!status.ok()) return from_rocksdb(status, "deleting meta " + describe_key(name));
    return {};
}

Result<ScanBatch> KeyStore::scan(const chord::NodeId& from_exclusive,
                                 const chord::NodeId& to_inclusive, std::size_t batch_keys_max,
                                 const std::optional<std::string>& resume_after,
                                 const Snapshot* snapshot, std::size_t batch_bytes_max) const {
    if (batch_keys_max == 0) return Error(Errc::invalid_argument, "scan batch_keys_max is 0");
    if (batch_bytes_max == 0) return Error(Errc::invalid_argument, "scan batch_bytes_max is 0");
    const chord::NodeId& a = from_exclusive;
    const chord::NodeId& b = to_inclusive;
    std::vector<KeyRange> ranges = arc_ranges(a, b);

    std::size_t first_range = 0;
    if (resume_after) {
        auto resume = decode_data_key(*resume_after);
        if (!resume || !chord::in_open_closed(resume->key_id, a, b)) {
            return Error(Errc::invalid_argument, "scan resume_after " +
                                                     describe_key(*resume_after) +
                                                     " is not a storage key in the arc (" +
                                                     a.short_hex() + ", " + b.short_hex() + "]");
        }
        // In a wrapping arc, ids after a are in the first range and ids up to b in the last.
        if (!(a < b) && !(resume->key_id > a)) first_range = ranges.size() - 1;
        // The smallest string greater than resume_after: continue strictly after it.
        ranges[first_range].lower = *resume_after + '\0';
    }

    rocksdb::ReadOptions read_options;
    if (snapshot != nullptr) {
        assert(snapshot->owner_ == this);
        read_options.snapshot = snapshot->snapshot_;
    }
    // An arc is read once (handoff, repair); keep it from evicting the hot keys.
    read_options.fill_cache = false;

    ScanBatch batch;
    std::size_t batch_bytes = 0;
    for (std::size_t i = first_range; i < ranges.size(); ++i) {
        RangeBounds bounds;
        auto it = open_range(*db_, data_cf_, read_options, ranges[i], bounds);
        for (; it->Valid(); it->Next()) {
            // One entry past a full batch proves there is more, so resume_after is nullopt
            // exactly when the arc is done.
            if (batch.entries.size() >= batch_keys_max || batch_bytes >= batch_bytes_max) {
                const Entry& last = batch.entries.back();
                batch.resume_after = encode_data_key(last.key_id, last.key);
                return batch;
            }
            auto data_key = decode_data_key(it->key().ToStringView());
            if (!data_key) return data_key.error();
            auto record = decode_record(it->value().ToStringView(), data_key->key);
            if (!record) return record.error();
            batch_bytes += data_key->key.size() + record->value.size();
            batch.entries.push_back(
                Entry{data_key->key_id, std::move(data_key->key), std::move(*record)});
        }
        if (!it->status().ok()) {
            return from_rocksdb(it->status(),
                                "scanning arc (" + a.short_hex() + ", " + b.short_hex() + "]");
        }
    }
    return batch;
}

Result<ArcCount> KeyStore::count(const chord::NodeId& from_exclusive,
                                 const chord::NodeId& to_inclusive,
                                 const Snapshot* snapshot) const {
    rocksdb::ReadOptions read_options;
    read_options.fill_cache = false;
    if (snapshot != nullptr) {
        assert(snapshot->owner_ == this);
        read_options.snapshot = snapshot->snapshot_;
    }
    ArcCount out;
    for (const KeyRange& range : arc_ranges(from_exclusive, to_inclusive)) {
        RangeBounds bounds;
        auto it = open_range(*db_, data_cf_, read_options, range, bounds);
        for (; it->Valid(); it->Next()) {
            auto key = data_key_view(it->key().ToStringView());
            if (!key) return key.error();
            auto record = decode_record_header(it->value().ToStringView(), *key);
            if (!record) return record.error();
            ++(record->tombstone ? out.tombstones : out.live);
        }
        if (!it->status().ok()) return from_rocksdb(it->status(), "counting an arc");
    }
    return out;
}

Result<ArcDigest> KeyStore::digest(const chord::NodeId& from_exclusive,
                                   const chord::NodeId& to_inclusive, std::size_t buckets,
                                   const Snapshot* snapshot) const {
    if (buckets == 0 || buckets > kDigestBucketsMax) {
        return Error(Errc::invalid_argument, "digest of " + std::to_string(buckets) +
                                                 " buckets, outside [1, " +
                                                 std::to_string(kDigestBucketsMax) + "]");
    }
    const Error hash_failed(Errc::storage_error, "SHA-256 (OpenSSL EVP) failed");
    // starts[i]: offset from from_exclusive + 1 of bucket i's first id (digest_bucket_arc).
    const Wide length = arc_length(from_exclusive, to_inclusive);
    std::vector<chord::NodeId> starts;
    starts.reserve(buckets);
    for (std::size_t i = 0; i < buckets; ++i) {
        starts.push_back(from_wide(bucket_start(length, i, buckets)));
    }

    std::unique_ptr<Snapshot> own_snapshot;
    if (snapshot == nullptr) {
        own_snapshot = this->snapshot();
        snapshot = own_snapshot.get();
    }

    ArcDigest digest;
    digest.buckets.resize(buckets);
    digest.counts.assign(buckets, 0);
    Sha256 sha;
    if (!sha.reset()) return hash_failed;
    // Ring order from the arc start, so bucket indices never decrease: one hash is open at a
    // time, and buckets skipped on the way are finished empty. Keys and record headers are
    // read in place (no copies: a join digests whole arcs several times).
    rocksdb::ReadOptions read_options;
    read_options.snapshot = snapshot->snapshot_;
    read_options.fill_cache = false;
    std::size_t open = 0;
    std::string fed;
    for (const KeyRange& range : arc_ranges(from_exclusive, to_inclusive)) {
        RangeBounds bounds;
        auto it = open_range(*db_, data_cf_, read_options, range, bounds);
        for (; it->Valid(); it->Next()) {
            const std::string_view storage_key = it->key().ToStringView();
            auto key = data_key_view(storage_key);
            if (!key) return key.error();
            auto record = decode_record_header(it->value().ToStringView(), *key);
            if (!record) return record.error();
            // from_bytes only fails on a wrong length, which data_key_view rules out.
            const chord::NodeId key_id =
                *chord::NodeId::from_bytes(storage_key.substr(0, chord::NodeId::kBytes));
            const chord::NodeId offset = chord::distance(from_exclusive, key_id).prev();
            const auto bucket = static_cast<std::size_t>(
                std::upper_bound(starts.begin(), starts.end(), offset) - starts.begin() - 1);
            assert(bucket >= open && bucket < buckets);
            for (; open < bucket; ++open) {
                if (!sha.finish(digest.buckets[open]) || !sha.reset()) return hash_failed;
            }
            fed.clear();
            append_be64(fed, key->size());
            fed.append(storage_key);
            append_be64(fed, record->version);
            fed.push_back(static_cast<char>(record->tombstone ? kRecordFlagTombstone : 0));
            if (!sha.update(fed.data(), fed.size())) return hash_failed;
            ++digest.counts[bucket];
        }
        if (!it->status().ok()) {
            return from_rocksdb(it->status(), "digesting arc (" + from_exclusive.short_hex() +
                                                  ", " + to_inclusive.short_hex() + "]");
        }
    }
    for (; open < buckets; ++open) {
        if (!sha.finish(digest.buckets[open]) || !sha.reset()) return hash_failed;
    }
    return digest;
}

std::unique_ptr<Snapshot> KeyStore::snapshot() const {
    return std::unique_ptr<Snapshot>(new Snapshot(this, db_.get(), db_->GetSnapshot()));
}

KeyStoreCacheStats KeyStore::cache_stats() const {
    return cache_ ? cache_->stats() : KeyStoreCacheStats{};
}

Result<std::uint64_t> KeyStore::approximate_keys() const {
    std::uint64_t keys = 0;
    if (!db_->GetIntProperty(data_cf_, rocksdb::DB::Properties::kEstimateNumKeys, &keys)) {
        return Error(Errc::storage_error, "RocksDB property rocksdb.estimate-num-keys missing");
    }
    return keys;
}

}  // namespace chordkv::storage
