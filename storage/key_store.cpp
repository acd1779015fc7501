#include "storage/key_store.hpp"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <cassert>
#include <utility>

namespace chordkv::storage {

namespace {

constexpr const char* kMetaColumnFamily = "meta";
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
    return std::unique_ptr<KeyStore>(
        new KeyStore(options, std::unique_ptr<rocksdb::DB>(raw_db), handles[0], handles[1]));
}

KeyStore::KeyStore(KeyStoreOptions options, std::unique_ptr<rocksdb::DB> db,
                   rocksdb::ColumnFamilyHandle* data_cf, rocksdb::ColumnFamilyHandle* meta_cf)
    : options_(std::move(options)), db_(std::move(db)), data_cf_(data_cf), meta_cf_(meta_cf) {}

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
    rocksdb::WriteOptions write_options;
    write_options.sync = options_.sync_writes;
    rocksdb::Status status = db_->Put(write_options, data_cf_, encode_data_key(key),
                                      encode_record(version, /*tombstone=*/false, value));
    if (!status.ok()) return from_rocksdb(status, "writing key " + describe_key(key));
    return {};
}

Status KeyStore::del(std::string_view key, std::uint64_t version) {
    if (auto checked = check_key(key); !checked) return checked;
    rocksdb::WriteOptions write_options;
    write_options.sync = options_.sync_writes;
    rocksdb::Status status = db_->Put(write_options, data_cf_, encode_data_key(key),
                                      encode_record(version, /*tombstone=*/true, {}));
    if (!status.ok()) return from_rocksdb(status, "deleting key " + describe_key(key));
    return {};
}

Status KeyStore::write(const WriteBatch& batch) {
    if (auto checked = check_batch(batch); !checked) return checked;
    rocksdb::WriteBatch rocks_batch;
    rocksdb::Status status;
    for (const auto& op : batch.ops_) {
        switch (op.kind) {
            case WriteBatch::Kind::put:
                status = rocks_batch.Put(data_cf_, encode_data_key(op.key),
                                         encode_record(op.version, /*tombstone=*/false, op.value));
                break;
            case WriteBatch::Kind::del:
                status = rocks_batch.Put(data_cf_, encode_data_key(op.key),
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
    rocksdb::WriteOptions write_options;
    write_options.sync = options_.sync_writes;
    status = db_->Write(write_options, &rocks_batch);
    if (!status.ok()) {
        return from_rocksdb(status,
                            "writing batch of " + std::to_string(batch.size()) + " operations");
    }
    return {};
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
    const chord::NodeId max = chord::NodeId::max();

    // Key id k lies in (a, b] iff the storage key lies in [prefix(a+1), prefix(b+1)): every
    // storage key starting with id k sorts at or after the bare 20-byte prefix(k) and before
    // prefix(k+1). b == max has no b+1, so that range is open-ended.
    //   a <  b:  [a+1, b+1)
    //   a >= b:  [a+1, end) then [begin, b+1)    (the first is empty when a == max)
    std::vector<KeyRange> ranges;
    std::optional<std::string> upper;
    if (b != max) upper = id_prefix(b.next());
    if (a < b) {
        ranges.push_back({id_prefix(a.next()), upper});
    } else {
        if (a != max) ranges.push_back({id_prefix(a.next()), std::nullopt});
        ranges.push_back({std::nullopt, upper});
    }

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
        const KeyRange& range = ranges[i];
        // The bound slices must outlive the iterator, which holds pointers to them; both
        // point into `ranges`, which outlives the loop.
        rocksdb::Slice lower;
        rocksdb::Slice upper_slice;
        read_options.iterate_lower_bound = nullptr;
        read_options.iterate_upper_bound = nullptr;
        if (range.lower) {
            lower = *range.lower;
            read_options.iterate_lower_bound = &lower;
        }
        if (range.upper) {
            upper_slice = *range.upper;
            read_options.iterate_upper_bound = &upper_slice;
        }
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, data_cf_));
        if (range.lower) {
            it->Seek(lower);
        } else {
            it->SeekToFirst();
        }
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

std::unique_ptr<Snapshot> KeyStore::snapshot() const {
    return std::unique_ptr<Snapshot>(new Snapshot(this, db_.get(), db_->GetSnapshot()));
}

Result<std::uint64_t> KeyStore::approximate_keys() const {
    std::uint64_t keys = 0;
    if (!db_->GetIntProperty(data_cf_, rocksdb::DB::Properties::kEstimateNumKeys, &keys)) {
        return Error(Errc::storage_error, "RocksDB property rocksdb.estimate-num-keys missing");
    }
    return keys;
}

}  // namespace chordkv::storage
