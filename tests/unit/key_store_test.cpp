// Unit tests for storage::KeyStore and the record encoding, against a real RocksDB in a
// temporary directory. Arc scans are checked against an oracle built from NodeId::hash and
// in_open_closed.
#include "storage/key_store.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "chord/node_id.hpp"
#include "storage/record.hpp"

namespace chordkv::storage {
namespace {

namespace fs = std::filesystem;
using chord::NodeId;

// A uniformly random ring position drawn from `rng`.
NodeId random_node_id(std::mt19937_64& rng) {
    NodeId::Bytes bytes;
    for (auto& byte : bytes) byte = static_cast<std::uint8_t>(rng());
    return NodeId(bytes);
}

class KeyStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        dir_ = fs::temp_directory_path() /
               ("chordkv_key_store_test_" + std::string(info->name()) + "_" +
                std::to_string(::getpid()) + "_" + std::to_string(std::random_device{}()));
        fs::create_directories(dir_);
        open_store();
    }

    void TearDown() override {
        store_.reset();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    std::string db_path() const { return (dir_ / "db").string(); }

    // Another store in its own directory under dir_, removed with it.
    std::unique_ptr<KeyStore> open_other(const std::string& name) {
        auto opened = KeyStore::open((dir_ / name).string(), KeyStoreOptions{});
        EXPECT_TRUE(opened) << opened.error().message();
        return opened ? std::move(*opened) : nullptr;
    }

    void open_store(const KeyStoreOptions& options = {}) {
        auto opened = KeyStore::open(db_path(), options);
        ASSERT_TRUE(opened) << opened.error().message();
        store_ = std::move(*opened);
    }

    // Closes the store and writes `key -> value` straight into a column family with a
    // separate RocksDB handle, as a broken disk or another program would.
    void write_raw(const std::string& key, const std::string& value,
                   const std::string& column_family = rocksdb::kDefaultColumnFamilyName) {
        store_.reset();
        std::vector<rocksdb::ColumnFamilyDescriptor> descriptors{
            {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
            {"meta", rocksdb::ColumnFamilyOptions()},
        };
        std::vector<rocksdb::ColumnFamilyHandle*> handles;
        rocksdb::DB* db = nullptr;
        rocksdb::Status status =
            rocksdb::DB::Open(rocksdb::DBOptions(), db_path(), descriptors, &handles, &db);
        ASSERT_TRUE(status.ok()) << status.ToString();
        auto* cf = column_family == "meta" ? handles[1] : handles[0];
        status = db->Put(rocksdb::WriteOptions(), cf, key, value);
        EXPECT_TRUE(status.ok()) << status.ToString();
        for (auto* handle : handles) EXPECT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
        delete db;
        open_store();
    }

    // Every entry of the arc, fetched `batch_keys_max` at a time, checking each batch's
    // contract on the way.
    std::vector<Entry> scan_all(const NodeId& from, const NodeId& to, std::size_t batch_keys_max,
                                const Snapshot* snapshot = nullptr,
                                std::size_t batch_bytes_max = kScanBatchBytesMaxDefault) {
        std::vector<Entry> out;
        std::optional<std::string> resume;
        for (int batches = 0; batches < 100'000; ++batches) {
            auto batch = store_->scan(from, to, batch_keys_max, resume, snapshot, batch_bytes_max);
            if (!batch) {
                ADD_FAILURE() << batch.error().message();
                return out;
            }
            EXPECT_LE(batch->entries.size(), batch_keys_max);
            // A non-null resume_after promises more entries, so no batch before the last is
            // empty.
            if (batch->resume_after) {
                EXPECT_FALSE(batch->entries.empty());
            }
            for (auto& entry : batch->entries) out.push_back(std::move(entry));
            resume = batch->resume_after;
            if (!resume) return out;
            EXPECT_EQ(*resume, encode_data_key(out.back().key_id, out.back().key));
        }
        ADD_FAILURE() << "scan did not finish";
        return out;
    }

    fs::path dir_;
    std::unique_ptr<KeyStore> store_;
};

std::vector<std::string> keys_of(const std::vector<Entry>& entries) {
    std::vector<std::string> keys;
    for (const auto& entry : entries) keys.push_back(entry.key);
    return keys;
}

// The keys of `all` whose id lies in (from, to], in ring order starting just after `from`.
std::vector<std::string> oracle_arc(const std::vector<std::string>& all, const NodeId& from,
                                    const NodeId& to) {
    std::vector<std::pair<NodeId, std::string>> in_arc;
    for (const auto& key : all) {
        NodeId id = NodeId::hash(key);
        if (chord::in_open_closed(id, from, to)) in_arc.emplace_back(id, key);
    }
    // Distance from from+1 puts from+1 first and `from` itself (whole ring) last.
    const NodeId start = from.next();
    std::sort(in_arc.begin(), in_arc.end(), [&](const auto& x, const auto& y) {
        NodeId dx = chord::distance(start, x.first);
        NodeId dy = chord::distance(start, y.first);
        if (dx != dy) return dx < dy;
        return x.second < y.second;
    });
    std::vector<std::string> keys;
    for (auto& [id, key] : in_arc) keys.push_back(std::move(key));
    return keys;
}

// An Entry for apply_batch(), with its key id filled in.
Entry entry_of(const std::string& key, std::uint64_t version, bool tombstone,
               const std::string& value = {}) {
    return Entry{NodeId::hash(key), key, Record{version, tombstone, tombstone ? "" : value}};
}

// The index of the digest bucket whose sub-arc holds `id`, or `buckets` when none does.
std::size_t bucket_holding(const NodeId& id, const NodeId& from, const NodeId& to,
                           std::size_t buckets) {
    for (std::size_t i = 0; i < buckets; ++i) {
        auto arc = digest_bucket_arc(from, to, buckets, i);
        if (arc && chord::in_open_closed(id, arc->first, arc->second)) return i;
    }
    return buckets;
}

// --- record encoding ---------------------------------------------------------------------

TEST(RecordTest, EncodingMatchesGoldenBytes) {
    using namespace std::string_literals;
    EXPECT_EQ(encode_record(0x0102030405060708, false, "v"),
              "\x01\x02\x03\x04\x05\x06\x07\x08\x00v"s);
    EXPECT_EQ(encode_record(7, true, "ignored"), "\x00\x00\x00\x00\x00\x00\x00\x07\x01"s);

    const std::string storage_key = encode_data_key("k");
    const NodeId::Bytes id = NodeId::hash("k").bytes();
    ASSERT_EQ(storage_key.size(), 21u);
    EXPECT_EQ(storage_key.substr(0, 20),
              std::string(reinterpret_cast<const char*>(id.data()), id.size()));
    EXPECT_EQ(storage_key.substr(20), "k");
}

TEST(RecordTest, DecodeRoundTrips) {
    auto record = decode_record(encode_record(~std::uint64_t{0}, false, "value"), "k");
    ASSERT_TRUE(record) << record.error().message();
    EXPECT_EQ(*record, (Record{~std::uint64_t{0}, false, "value"}));

    auto tombstone = decode_record(encode_record(42, true, ""), "k");
    ASSERT_TRUE(tombstone) << tombstone.error().message();
    EXPECT_EQ(*tombstone, (Record{42, true, ""}));

    auto key = decode_data_key(encode_data_key("some key"));
    ASSERT_TRUE(key) << key.error().message();
    EXPECT_EQ(key->key_id, NodeId::hash("some key"));
    EXPECT_EQ(key->key, "some key");
}

TEST(RecordTest, MalformedBytesAreCorruption) {
    using namespace std::string_literals;
    auto short_record = decode_record("\x00\x01"s, "the-key");
    ASSERT_FALSE(short_record);
    EXPECT_EQ(short_record.error(), Errc::corruption);
    EXPECT_NE(short_record.error().message().find("the-key"), std::string::npos);

    auto unknown_flags = decode_record("\x00\x00\x00\x00\x00\x00\x00\x01\x82"s, "k");
    ASSERT_FALSE(unknown_flags);
    EXPECT_EQ(unknown_flags.error(), Errc::corruption);
    EXPECT_NE(unknown_flags.error().message().find("0x82"), std::string::npos);

    auto tombstone_with_value = decode_record("\x00\x00\x00\x00\x00\x00\x00\x01\x01x"s, "k");
    ASSERT_FALSE(tombstone_with_value);
    EXPECT_EQ(tombstone_with_value.error(), Errc::corruption);

    auto short_key = decode_data_key(std::string(20, 'x'));
    ASSERT_FALSE(short_key);
    EXPECT_EQ(short_key.error(), Errc::corruption);
}

TEST(RecordTest, DescribeKeyEscapesAndTruncates) {
    using namespace std::string_literals;
    EXPECT_EQ(describe_key("a\x00\xff\"b"s), R"("a\x00\xff\x22b")");
    const std::string described = describe_key(std::string(1000, 'z'));
    EXPECT_NE(described.find("(1000 bytes)"), std::string::npos);
    EXPECT_LT(described.size(), 100u);
}

// --- open --------------------------------------------------------------------------------

TEST_F(KeyStoreTest, OpenUnderRegularFileIsStorageError) {
    const fs::path file = dir_ / "plain_file";
    std::ofstream(file) << "not a directory";
    auto opened = KeyStore::open((file / "db").string(), KeyStoreOptions{});
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error(), Errc::storage_error);
    // RocksDB's own message is kept, after what we were doing.
    EXPECT_NE(opened.error().detail().find("opening key store at"), std::string::npos);
    EXPECT_NE(opened.error().detail().find("IO error"), std::string::npos)
        << opened.error().detail();
}

TEST_F(KeyStoreTest, OpenMissingWithoutCreateIsStorageError) {
    KeyStoreOptions options;
    options.create_if_missing = false;
    auto opened = KeyStore::open((dir_ / "absent").string(), options);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error(), Errc::storage_error);
    EXPECT_FALSE(fs::exists(dir_ / "absent" / "CURRENT"));
}

TEST_F(KeyStoreTest, SecondOpenOfSamePathIsStorageError) {
    auto second = KeyStore::open(db_path(), KeyStoreOptions{});
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error(), Errc::storage_error);
    EXPECT_NE(second.error().detail().find("lock"), std::string::npos) << second.error().detail();
}

// --- put / get / read / del --------------------------------------------------------------

TEST_F(KeyStoreTest, PutGetReadRoundTrip) {
    ASSERT_TRUE(store_->put("alpha", "one", 10));
    auto value = store_->get("alpha");
    ASSERT_TRUE(value) << value.error().message();
    EXPECT_EQ(*value, "one");
    auto record = store_->read("alpha");
    ASSERT_TRUE(record) << record.error().message();
    EXPECT_EQ(*record, (Record{10, false, "one"}));

    auto missing = store_->get("beta");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error(), Errc::not_found);
    auto missing_record = store_->read("beta");
    ASSERT_FALSE(missing_record);
    EXPECT_EQ(missing_record.error(), Errc::not_found);
}

TEST_F(KeyStoreTest, ValuesAndKeysAreBinarySafe) {
    using namespace std::string_literals;
    std::string all_bytes;
    for (int i = 0; i < 256; ++i) all_bytes.push_back(static_cast<char>(i));
    const std::string nul_key = "k\x00y\x00"s;
    const std::string nul_value = "\x00\x00mid\x00"s;

    ASSERT_TRUE(store_->put("all", all_bytes, 1));
    ASSERT_TRUE(store_->put(nul_key, nul_value, 2));
    ASSERT_TRUE(store_->put(all_bytes, "key of every byte", 3));
    ASSERT_TRUE(store_->put("empty", "", 4));

    EXPECT_EQ(store_->get("all").value(), all_bytes);
    EXPECT_EQ(store_->get(nul_key).value(), nul_value);
    EXPECT_EQ(store_->get(all_bytes).value(), "key of every byte");
    EXPECT_EQ(store_->get("empty").value(), "");
    // "k" is a prefix of nul_key but a different key.
    EXPECT_EQ(store_->get("k").error(), Errc::not_found);
}

TEST_F(KeyStoreTest, OverwriteReplacesValueAndVersion) {
    ASSERT_TRUE(store_->put("k", "v1", 1));
    ASSERT_TRUE(store_->put("k", "v2", 2));
    EXPECT_EQ(store_->read("k").value(), (Record{2, false, "v2"}));
    // The caller decides which version wins; the store just keeps the last write.
    ASSERT_TRUE(store_->put("k", "older", 1));
    EXPECT_EQ(store_->read("k").value(), (Record{1, false, "older"}));
    // A put after a delete brings the key back.
    ASSERT_TRUE(store_->del("k", 5));
    ASSERT_TRUE(store_->put("k", "again", 6));
    EXPECT_EQ(store_->get("k").value(), "again");
}

TEST_F(KeyStoreTest, DeleteWritesTombstone) {
    ASSERT_TRUE(store_->put("gone", "soon", 3));
    ASSERT_TRUE(store_->put("stays", "here", 3));
    ASSERT_TRUE(store_->del("gone", 7));

    auto value = store_->get("gone");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error(), Errc::not_found);

    auto record = store_->read("gone");
    ASSERT_TRUE(record) << record.error().message();
    EXPECT_EQ(*record, (Record{7, true, ""}));

    // Deleting a key never written still records the tombstone.
    ASSERT_TRUE(store_->del("never", 9));
    EXPECT_EQ(store_->read("never").value(), (Record{9, true, ""}));

    const NodeId zero;
    auto entries = scan_all(zero, zero, 10);
    ASSERT_EQ(entries.size(), 3u);
    std::size_t tombstones = 0;
    for (const auto& entry : entries) {
        EXPECT_EQ(entry.key_id, NodeId::hash(entry.key));
        if (entry.key == "gone") {
            EXPECT_EQ(entry.record, (Record{7, true, ""}));
        } else if (entry.key == "never") {
            EXPECT_EQ(entry.record, (Record{9, true, ""}));
        } else {
            EXPECT_EQ(entry.key, "stays");
            EXPECT_EQ(entry.record, (Record{3, false, "here"}));
        }
        tombstones += entry.record.tombstone ? 1 : 0;
    }
    EXPECT_EQ(tombstones, 2u);
}

// --- limits and arguments ----------------------------------------------------------------

TEST_F(KeyStoreTest, EmptyKeyIsInvalidArgument) {
    EXPECT_EQ(store_->put("", "v", 1).error(), Errc::invalid_argument);
    EXPECT_EQ(store_->del("", 1).error(), Errc::invalid_argument);
    EXPECT_EQ(store_->get("").error(), Errc::invalid_argument);
    EXPECT_EQ(store_->read("").error(), Errc::invalid_argument);
    EXPECT_EQ(store_->put_meta("", "v").error(), Errc::invalid_argument);
    EXPECT_EQ(store_->get_meta("").error(), Errc::invalid_argument);
}

TEST_F(KeyStoreTest, DefaultSizeLimitsGiveTooLarge) {
    const KeyStoreOptions defaults;
    const std::string big_key(defaults.key_bytes_max + 1, 'k');
    auto put_big_key = store_->put(big_key, "v", 1);
    ASSERT_FALSE(put_big_key);
    EXPECT_EQ(put_big_key.error(), Errc::too_large);
    EXPECT_NE(put_big_key.error().detail().find(std::to_string(big_key.size())), std::string::npos)
        << put_big_key.error().detail();
    EXPECT_NE(put_big_key.error().detail().find(std::to_string(defaults.key_bytes_max)),
              std::string::npos);

    const std::string big_value(defaults.value_bytes_max + 1, 'v');
    auto put_big_value = store_->put("k", big_value, 1);
    ASSERT_FALSE(put_big_value);
    EXPECT_EQ(put_big_value.error(), Errc::too_large);
    EXPECT_NE(put_big_value.error().detail().find(std::to_string(big_value.size())),
              std::string::npos);
    EXPECT_NE(put_big_value.error().detail().find("value_bytes_max"), std::string::npos);
    EXPECT_EQ(store_->get("k").error(), Errc::not_found);

    // Exactly at the limits is accepted.
    const std::string max_key(defaults.key_bytes_max, 'k');
    ASSERT_TRUE(store_->put(max_key, std::string(defaults.value_bytes_max, 'v'), 1));
    EXPECT_EQ(store_->get(max_key).value().size(), defaults.value_bytes_max);
}

TEST_F(KeyStoreTest, ConfiguredLimitsApplyToDataMetaAndBatches) {
    KeyStoreOptions options;
    options.key_bytes_max = 8;
    options.value_bytes_max = 16;
    options.batch_bytes_max = 40;
    store_.reset();
    open_store(options);

    EXPECT_EQ(store_->put("123456789", "v", 1).error(), Errc::too_large);
    EXPECT_EQ(store_->del("123456789", 1).error(), Errc::too_large);
    EXPECT_EQ(store_->put("k", std::string(17, 'v'), 1).error(), Errc::too_large);
    EXPECT_TRUE(store_->put("12345678", std::string(16, 'v'), 1));
    EXPECT_EQ(store_->put_meta("123456789", "v").error(), Errc::too_large);
    EXPECT_EQ(store_->put_meta("name", std::string(17, 'v')).error(), Errc::too_large);

    WriteBatch too_many_bytes;
    too_many_bytes.put("a", std::string(16, 'v'), 1);
    too_many_bytes.put("b", std::string(16, 'v'), 1);
    too_many_bytes.put("c", std::string(16, 'v'), 1);
    EXPECT_EQ(too_many_bytes.bytes(), 51u);
    auto written = store_->write(too_many_bytes);
    ASSERT_FALSE(written);
    EXPECT_EQ(written.error(), Errc::too_large);
    EXPECT_NE(written.error().detail().find("batch_bytes_max"), std::string::npos);
    EXPECT_EQ(store_->get("a").error(), Errc::not_found);
}

TEST_F(KeyStoreTest, ScanArgumentsAreChecked) {
    ASSERT_TRUE(store_->put("k", "v", 1));
    const NodeId a = NodeId::from_uint64(1);
    const NodeId b = NodeId::from_uint64(1000);
    EXPECT_EQ(store_->scan(a, b, 0, std::nullopt).error(), Errc::invalid_argument);
    EXPECT_EQ(store_->scan(a, b, 10, std::nullopt, nullptr, 0).error(), Errc::invalid_argument);
    // Too short to be a storage key.
    EXPECT_EQ(store_->scan(a, a, 10, std::string("short")).error(), Errc::invalid_argument);
    // A storage key whose id lies outside (a, b].
    EXPECT_EQ(store_->scan(a, b, 10, encode_data_key(NodeId::max(), "x")).error(),
              Errc::invalid_argument);
}

// --- arc scans ---------------------------------------------------------------------------

TEST_F(KeyStoreTest, ArcScansMatchOracle) {
    constexpr int kKeys = 2000;
    std::vector<std::string> keys;
    WriteBatch batch;
    for (int i = 0; i < kKeys; ++i) {
        keys.push_back("key-" + std::to_string(i));
        batch.put(keys.back(), "value-" + std::to_string(i), static_cast<std::uint64_t>(i));
    }
    ASSERT_TRUE(store_->write(batch));

    std::vector<NodeId> ids;
    for (const auto& key : keys) ids.push_back(NodeId::hash(key));
    std::sort(ids.begin(), ids.end());

    std::mt19937_64 rng(20240601);
    auto random_id = [&rng] { return random_node_id(rng); };
    const NodeId zero;
    const NodeId max = NodeId::max();

    struct Arc {
        const char* name;
        NodeId from;
        NodeId to;
    };
    const std::vector<Arc> arcs{
        {"ordered, ends on key ids", ids[100], ids[700]},
        {"ordered, adjacent key ids", ids[5], ids[6]},
        {"wrapping, ends on key ids", ids[1800], ids[150]},
        {"wrapping from the last key id", ids[kKeys - 1], ids[0]},
        {"whole ring after a key id", ids[500], ids[500]},
        {"whole ring after zero", zero, zero},
        {"whole ring after max", max, max},
        {"from zero", zero, ids[300]},
        {"to max", ids[1200], max},
        {"from max", max, ids[40]},
        {"wrapping to zero", ids[1900], zero},
        {"zero to max", zero, max},
        {"random ends 1", random_id(), random_id()},
        {"random ends 2", random_id(), random_id()},
        {"random ends 3", random_id(), random_id()},
        {"random empty arc", ids[10].next(), ids[11].prev()},
    };

    for (const Arc& arc : arcs) {
        SCOPED_TRACE(arc.name);
        const std::vector<std::string> expected = oracle_arc(keys, arc.from, arc.to);
        auto counted = store_->count(arc.from, arc.to);
        ASSERT_TRUE(counted) << counted.error().message();
        EXPECT_EQ(counted->live, expected.size());
        EXPECT_EQ(counted->tombstones, 0u);
        for (std::size_t batch_keys_max : {std::size_t{1}, std::size_t{7}, std::size_t{5000}}) {
            SCOPED_TRACE("batch_keys_max " + std::to_string(batch_keys_max));
            const std::vector<Entry> entries = scan_all(arc.from, arc.to, batch_keys_max);
            EXPECT_EQ(keys_of(entries), expected);
            for (const auto& entry : entries) {
                ASSERT_EQ(entry.key_id, NodeId::hash(entry.key));
                ASSERT_EQ(entry.record.value, "value-" + entry.key.substr(4));
            }
        }
    }

    // Spot-check the oracle itself on the ends: start excluded, end included.
    const std::vector<Entry> ordered = scan_all(ids[100], ids[700], 7);
    ASSERT_EQ(ordered.size(), 600u);
    EXPECT_EQ(ordered.front().key_id, ids[101]);
    EXPECT_EQ(ordered.back().key_id, ids[700]);
    const std::vector<Entry> wrapping = scan_all(ids[1800], ids[150], 7);
    ASSERT_EQ(wrapping.size(), static_cast<std::size_t>(kKeys - 1800 + 150));
    EXPECT_EQ(wrapping.front().key_id, ids[1801]);
    EXPECT_EQ(wrapping[kKeys - 1802].key_id, ids[kKeys - 1]);
    EXPECT_EQ(wrapping[kKeys - 1801].key_id, ids[0]);
    EXPECT_EQ(wrapping.back().key_id, ids[150]);
    const std::vector<Entry> whole = scan_all(ids[500], ids[500], 7);
    ASSERT_EQ(whole.size(), static_cast<std::size_t>(kKeys));
    EXPECT_EQ(whole.front().key_id, ids[501]);
    EXPECT_EQ(whole.back().key_id, ids[500]);
}

TEST_F(KeyStoreTest, CountSeparatesTombstonesFromValues) {
    std::vector<std::string> keys;
    for (int i = 0; i < 300; ++i) {
        keys.push_back("c-" + std::to_string(i));
        ASSERT_TRUE(store_->put(keys.back(), "v", 1));
    }
    for (int i = 0; i < 300; i += 3) ASSERT_TRUE(store_->del(keys[static_cast<std::size_t>(i)], 2));
    ASSERT_TRUE(store_->put_meta("not-a-key", "x"));  // metadata is not counted
    std::vector<NodeId> ids;
    for (const auto& key : keys) ids.push_back(NodeId::hash(key));
    std::sort(ids.begin(), ids.end());
    // The whole ring, and two arcs that split it at key ids: the halves add up to the whole.
    auto whole = store_->count(ids[0], ids[0]);
    auto first = store_->count(ids[0], ids[150]);
    auto second = store_->count(ids[150], ids[0]);
    ASSERT_TRUE(whole && first && second);
    EXPECT_EQ(whole->live, 200u);
    EXPECT_EQ(whole->tombstones, 100u);
    EXPECT_EQ(first->live + second->live, 200u);
    EXPECT_EQ(first->tombstones + second->tombstones, 100u);
    EXPECT_EQ(first->live + first->tombstones, 150u);
}

TEST_F(KeyStoreTest, EraseUnchangedKeepsNewerWrites) {
    ASSERT_TRUE(store_->put("a", "1", 10));
    ASSERT_TRUE(store_->put("b", "2", 10));
    ASSERT_TRUE(store_->del("c", 10));
    auto entries = scan_all(NodeId(), NodeId(), 100);
    ASSERT_EQ(entries.size(), 3u);
    // "b" is written again after the scan: its newer version must survive the erase.
    ASSERT_TRUE(store_->put("b", "3", 11));
    auto erased = store_->erase_unchanged(entries);
    ASSERT_TRUE(erased) << erased.error().message();
    EXPECT_EQ(*erased, 2u);
    EXPECT_EQ(store_->read("a").code(), Errc::not_found);
    EXPECT_EQ(store_->read("c").code(), Errc::not_found);  // the tombstone itself is gone
    auto b = store_->get("b");
    ASSERT_TRUE(b);
    EXPECT_EQ(*b, "3");
    auto again = store_->erase_unchanged(entries);
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, 0u);
}

TEST_F(KeyStoreTest, ScanResumesStrictlyAfterResumeKey) {
    std::vector<std::string> keys;
    for (int i = 0; i < 50; ++i) {
        keys.push_back("k" + std::to_string(i));
        ASSERT_TRUE(store_->put(keys.back(), "v", 1));
    }
    const NodeId a = NodeId::hash("k0");
    const std::vector<std::string> expected = oracle_arc(keys, a, a);

    auto first = store_->scan(a, a, 10, std::nullopt);
    ASSERT_TRUE(first) << first.error().message();
    ASSERT_EQ(first->entries.size(), 10u);
    ASSERT_TRUE(first->resume_after);
    // Keys written behind the resume point are not revisited; keys ahead of it are seen.
    auto second = store_->scan(a, a, 100, first->resume_after);
    ASSERT_TRUE(second) << second.error().message();
    EXPECT_FALSE(second->resume_after);
    std::vector<std::string> got = keys_of(first->entries);
    for (const auto& key : keys_of(second->entries)) got.push_back(key);
    EXPECT_EQ(got, expected);

    // A batch that ends exactly at the arc's last entry reports the arc done.
    auto exact = store_->scan(a, a, expected.size(), std::nullopt);
    ASSERT_TRUE(exact) << exact.error().message();
    EXPECT_EQ(exact->entries.size(), expected.size());
    EXPECT_FALSE(exact->resume_after);
}

TEST_F(KeyStoreTest, ScanBatchBytesIsASoftCap) {
    std::vector<std::string> keys;
    for (int i = 0; i < 40; ++i) {
        keys.push_back("b" + std::to_string(i));
        ASSERT_TRUE(store_->put(keys.back(), std::string(100, 'x'), 1));
    }
    ASSERT_TRUE(store_->put("huge", std::string(10'000, 'y'), 1));
    keys.push_back("huge");
    const NodeId zero;
    const std::vector<std::string> expected = oracle_arc(keys, zero, zero);

    // A cap of one byte still makes progress: one entry per batch.
    std::optional<std::string> resume;
    std::vector<std::string> got;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        auto batch = store_->scan(zero, zero, 1000, resume, nullptr, 1);
        ASSERT_TRUE(batch) << batch.error().message();
        ASSERT_EQ(batch->entries.size(), 1u);
        got.push_back(batch->entries[0].key);
        resume = batch->resume_after;
    }
    EXPECT_FALSE(resume);
    EXPECT_EQ(got, expected);

    // A cap of 250 bytes stops after the entry that reaches it: at most 3 of ~103 bytes.
    auto batch = store_->scan(zero, zero, 1000, std::nullopt, nullptr, 250);
    ASSERT_TRUE(batch) << batch.error().message();
    EXPECT_GE(batch->entries.size(), 1u);
    EXPECT_LE(batch->entries.size(), 3u);
    EXPECT_EQ(keys_of(scan_all(zero, zero, 1000, nullptr, 250)), expected);
}

TEST_F(KeyStoreTest, MetadataIsNotInScans) {
    ASSERT_TRUE(store_->put_meta("node_id", "abc"));
    ASSERT_TRUE(store_->put("data", "v", 1));
    const NodeId zero;
    EXPECT_EQ(keys_of(scan_all(zero, zero, 10)), std::vector<std::string>{"data"});
    EXPECT_EQ(store_->get("node_id").error(), Errc::not_found);
}

// --- snapshots ---------------------------------------------------------------------------

TEST_F(KeyStoreTest, SnapshotHidesLaterWrites) {
    std::vector<std::string> before;
    for (int i = 0; i < 30; ++i) {
        before.push_back("s" + std::to_string(i));
        ASSERT_TRUE(store_->put(before.back(), "old", 1));
    }
    const std::unique_ptr<Snapshot> snapshot = store_->snapshot();
    ASSERT_NE(snapshot, nullptr);

    std::vector<std::string> after = before;
    for (int i = 0; i < 30; ++i) {
        after.push_back("later" + std::to_string(i));
        ASSERT_TRUE(store_->put(after.back(), "new", 2));
    }
    ASSERT_TRUE(store_->put("s0", "overwritten", 2));
    ASSERT_TRUE(store_->del("s1", 2));

    const NodeId from = NodeId::hash("s5");
    const std::vector<Entry> seen = scan_all(from, from, 4, snapshot.get());
    EXPECT_EQ(keys_of(seen), oracle_arc(before, from, from));
    for (const auto& entry : seen) EXPECT_EQ(entry.record, (Record{1, false, "old"}));

    EXPECT_EQ(store_->get("s0", snapshot.get()).value(), "old");
    EXPECT_EQ(store_->get("s1", snapshot.get()).value(), "old");
    EXPECT_EQ(store_->get("later0", snapshot.get()).error(), Errc::not_found);

    // Without the snapshot the new writes are visible.
    EXPECT_EQ(keys_of(scan_all(from, from, 4)), oracle_arc(after, from, from));
    EXPECT_EQ(store_->get("s0").value(), "overwritten");
    EXPECT_TRUE(store_->read("s1").value().tombstone);
}

// --- write batches -----------------------------------------------------------------------

TEST_F(KeyStoreTest, WriteBatchAppliesEverything) {
    ASSERT_TRUE(store_->put("doomed", "v", 1));
    ASSERT_TRUE(store_->put_meta("old_setting", "x"));

    WriteBatch batch;
    batch.put("a", "1", 10);
    batch.put("b", "2", 11);
    batch.put("a", "1b", 12);  // later op on the same key wins
    batch.del("doomed", 13);
    batch.put_meta("cluster", "test-cluster");
    batch.del_meta("old_setting");
    EXPECT_EQ(batch.size(), 6u);
    EXPECT_FALSE(batch.empty());
    ASSERT_TRUE(store_->write(batch));

    EXPECT_EQ(store_->read("a").value(), (Record{12, false, "1b"}));
    EXPECT_EQ(store_->get("b").value(), "2");
    EXPECT_EQ(store_->read("doomed").value(), (Record{13, true, ""}));
    EXPECT_EQ(store_->get_meta("cluster").value(), "test-cluster");
    EXPECT_EQ(store_->get_meta("old_setting").error(), Errc::not_found);

    batch.clear();
    EXPECT_EQ(batch.size(), 0u);
    EXPECT_EQ(batch.bytes(), 0u);
    EXPECT_TRUE(store_->write(batch));  // an empty batch is a no-op
}

TEST_F(KeyStoreTest, InvalidWriteBatchWritesNothing) {
    WriteBatch batch;
    batch.put("first", "1", 1);
    batch.put_meta("m", "x");
    batch.put("", "empty key", 1);
    auto written = store_->write(batch);
    ASSERT_FALSE(written);
    EXPECT_EQ(written.error(), Errc::invalid_argument);
    EXPECT_EQ(store_->get("first").error(), Errc::not_found);
    EXPECT_EQ(store_->get_meta("m").error(), Errc::not_found);
}

// --- metadata ----------------------------------------------------------------------------

TEST_F(KeyStoreTest, MetadataRoundTrip) {
    using namespace std::string_literals;
    EXPECT_EQ(store_->get_meta("node_id").error(), Errc::not_found);
    ASSERT_TRUE(store_->put_meta("node_id", "\x00\x01\x02"s));
    EXPECT_EQ(store_->get_meta("node_id").value(), "\x00\x01\x02"s);
    ASSERT_TRUE(store_->put_meta("node_id", "replaced"));
    EXPECT_EQ(store_->get_meta("node_id").value(), "replaced");
    ASSERT_TRUE(store_->del_meta("node_id"));
    EXPECT_EQ(store_->get_meta("node_id").error(), Errc::not_found);
    EXPECT_TRUE(store_->del_meta("never_set"));
}

// --- persistence -------------------------------------------------------------------------

TEST_F(KeyStoreTest, DataAndMetadataSurviveReopen) {
    ASSERT_TRUE(store_->put("kept", "value", 5));
    ASSERT_TRUE(store_->del("removed", 6));
    ASSERT_TRUE(store_->put_meta("cluster", "prod"));
    WriteBatch batch;
    batch.put("batched", "b", 7);
    batch.put_meta("vnodes", "8");
    ASSERT_TRUE(store_->write(batch));

    store_.reset();
    KeyStoreOptions options;
    options.create_if_missing = false;  // the directory must really be there
    open_store(options);

    EXPECT_EQ(store_->read("kept").value(), (Record{5, false, "value"}));
    EXPECT_EQ(store_->read("removed").value(), (Record{6, true, ""}));
    EXPECT_EQ(store_->get("batched").value(), "b");
    EXPECT_EQ(store_->get_meta("cluster").value(), "prod");
    EXPECT_EQ(store_->get_meta("vnodes").value(), "8");
    const NodeId zero;
    EXPECT_EQ(scan_all(zero, zero, 2).size(), 3u);
}

TEST_F(KeyStoreTest, SyncWritesSurviveReopen) {
    store_.reset();
    KeyStoreOptions options;
    options.sync_writes = true;
    open_store(options);
    ASSERT_TRUE(store_->put("durable", "yes", 1));
    store_.reset();
    open_store();
    EXPECT_EQ(store_->get("durable").value(), "yes");
}

// --- corruption --------------------------------------------------------------------------

TEST_F(KeyStoreTest, ShortRecordIsCorruption) {
    ASSERT_TRUE(store_->put("good", "v", 1));
    write_raw(encode_data_key("bad"), "xy");

    auto record = store_->read("bad");
    ASSERT_FALSE(record);
    EXPECT_EQ(record.error(), Errc::corruption);
    EXPECT_NE(record.error().detail().find("\"bad\""), std::string::npos)
        << record.error().detail();
    EXPECT_EQ(store_->get("bad").error(), Errc::corruption);
    EXPECT_EQ(store_->get("good").value(), "v");

    const NodeId zero;
    auto scanned = store_->scan(zero, zero, 100, std::nullopt);
    ASSERT_FALSE(scanned);
    EXPECT_EQ(scanned.error(), Errc::corruption);
    EXPECT_NE(scanned.error().detail().find("\"bad\""), std::string::npos);
}

TEST_F(KeyStoreTest, UnknownFlagsAreCorruption) {
    using namespace std::string_literals;
    write_raw(encode_data_key("flagged"), "\x00\x00\x00\x00\x00\x00\x00\x01\x80value"s);
    auto record = store_->read("flagged");
    ASSERT_FALSE(record);
    EXPECT_EQ(record.error(), Errc::corruption);
    EXPECT_NE(record.error().detail().find("flagged"), std::string::npos);

    const NodeId id = NodeId::hash("flagged");
    auto scanned = store_->scan(id.prev(), id, 10, std::nullopt);
    ASSERT_FALSE(scanned);
    EXPECT_EQ(scanned.error(), Errc::corruption);
}

TEST_F(KeyStoreTest, ShortStorageKeyIsCorruptionInScan) {
    ASSERT_TRUE(store_->put("good", "v", 1));
    write_raw("short", encode_record(1, false, "v"));
    const NodeId zero;
    auto scanned = store_->scan(zero, zero, 100, std::nullopt);
    ASSERT_FALSE(scanned);
    EXPECT_EQ(scanned.error(), Errc::corruption);
    // Point reads of well-formed keys are unaffected.
    EXPECT_EQ(store_->get("good").value(), "v");
}

// --- last-writer-wins apply -------------------------------------------------------------

// The version bound (key_store.hpp): a record newer than every version the store holds is
// written without reading the stored one; anything else is read and compared as before.
TEST_F(KeyStoreTest, VersionBoundSkipsOnlyReadsThatCannotMatter) {
    EXPECT_TRUE(store_->apply("a", Record{10, false, "a10"}).value());  // nothing stored
    EXPECT_EQ(store_->version_reads_skipped(), 1u);
    EXPECT_TRUE(store_->apply("b", Record{5, false, "b5"}).value());  // under 10: read, absent
    EXPECT_EQ(store_->version_reads_skipped(), 1u);
    EXPECT_FALSE(store_->apply("a", Record{7, false, "a7"}).value());  // read: stale
    EXPECT_EQ(store_->read("a").value(), (Record{10, false, "a10"}));
    EXPECT_TRUE(store_->apply("a", Record{11, false, "a11"}).value());
    EXPECT_EQ(store_->version_reads_skipped(), 2u);

    // apply_batch: the entry above every stored version is written unread, the others are
    // compared with what is stored.
    const std::vector<Entry> entries = {
        {NodeId::hash("a"), "a", Record{9, false, "a9"}},    // stale
        {NodeId::hash("b"), "b", Record{6, false, "b6"}},    // newer than b5, under 11
        {NodeId::hash("c"), "c", Record{12, false, "c12"}},  // above everything
    };
    EXPECT_EQ(store_->apply_batch(entries).value(), 2u);
    EXPECT_EQ(store_->version_reads_skipped(), 3u);
    EXPECT_EQ(store_->read("a").value().version, 11u);
    EXPECT_EQ(store_->read("b").value().version, 6u);
    EXPECT_EQ(store_->read("c").value().version, 12u);

    // put() and del() raise the bound too.
    ASSERT_TRUE(store_->put("d", "d20", 20));
    EXPECT_FALSE(store_->apply("d", Record{15, false, "d15"}).value());
    EXPECT_EQ(store_->get("d").value(), "d20");
}

// After a reopen the in-memory maximum is gone: the persisted ceiling still keeps stale
// writes from being written unread.
TEST_F(KeyStoreTest, VersionBoundSurvivesAReopen) {
    EXPECT_TRUE(store_->apply("k", Record{100, false, "new"}).value());
    store_.reset();
    open_store();
    EXPECT_FALSE(store_->apply("k", Record{50, false, "old"}).value());
    EXPECT_EQ(store_->version_reads_skipped(), 0u);
    EXPECT_EQ(store_->get("k").value(), "new");
    // Far above the ceiling (100 + 2^32): no read needed.
    const std::uint64_t far = 100 + (std::uint64_t{1} << 32) + 1;
    EXPECT_TRUE(store_->apply("k", Record{far, false, "far"}).value());
    EXPECT_EQ(store_->version_reads_skipped(), 1u);
    EXPECT_EQ(store_->get("k").value(), "far");
}

// A store written without a ceiling (an older build) is scanned once at open: its highest
// version bounds it from then on.
TEST_F(KeyStoreTest, VersionBoundOfAStoreWithoutACeilingComesFromAScan) {
    write_raw(encode_data_key("old"), encode_record(1000, false, "kept"));
    EXPECT_FALSE(store_->apply("old", Record{500, false, "stale"}).value());
    EXPECT_TRUE(store_->apply("other", Record{999, false, "x"}).value());
    EXPECT_EQ(store_->version_reads_skipped(), 0u);
    EXPECT_EQ(store_->get("old").value(), "kept");
    EXPECT_TRUE(store_->apply("old", Record{1001, false, "newer"}).value());
    EXPECT_EQ(store_->version_reads_skipped(), 1u);
    // The scan's result was persisted: a reopen does not forget it.
    store_.reset();
    open_store();
    EXPECT_FALSE(store_->apply("old", Record{1000, false, "again"}).value());
    EXPECT_EQ(store_->get("old").value(), "newer");
}

TEST_F(KeyStoreTest, MetaNamesOfTheStoreAreReserved) {
    EXPECT_EQ(store_->put_meta("storage.version_ceiling", "x").error(), Errc::invalid_argument);
    EXPECT_EQ(store_->del_meta("storage.anything").error(), Errc::invalid_argument);
    WriteBatch batch;
    batch.put_meta("storage.version_ceiling", std::string(8, '\0'));
    EXPECT_EQ(store_->write(batch).error(), Errc::invalid_argument);
    EXPECT_TRUE(store_->put_meta("storage", "fine"));  // only the prefix with its dot
}

TEST_F(KeyStoreTest, ApplyIsLastWriterWins) {
    auto first = store_->apply("k", Record{10, false, "v10"});
    ASSERT_TRUE(first) << first.error().message();
    EXPECT_TRUE(*first);
    EXPECT_EQ(store_->read("k").value(), (Record{10, false, "v10"}));

    // Older: ignored.
    EXPECT_FALSE(store_->apply("k", Record{9, false, "v9"}).value());
    EXPECT_EQ(store_->read("k").value(), (Record{10, false, "v10"}));
    // Equal: the same write again, ignored even when the bytes differ.
    EXPECT_FALSE(store_->apply("k", Record{10, false, "other"}).value());
    EXPECT_FALSE(store_->apply("k", Record{10, true, ""}).value());
    EXPECT_EQ(store_->read("k").value(), (Record{10, false, "v10"}));
    // Newer: wins.
    EXPECT_TRUE(store_->apply("k", Record{11, false, "v11"}).value());
    EXPECT_EQ(store_->read("k").value(), (Record{11, false, "v11"}));

    // A tombstone with a higher version beats a value...
    EXPECT_TRUE(store_->apply("k", Record{12, true, ""}).value());
    EXPECT_EQ(store_->read("k").value(), (Record{12, true, ""}));
    EXPECT_EQ(store_->get("k").error(), Errc::not_found);
    // ...an older value cannot resurrect the key...
    EXPECT_FALSE(store_->apply("k", Record{11, false, "late"}).value());
    EXPECT_EQ(store_->read("k").value(), (Record{12, true, ""}));
    // ...and a value with a higher version beats the tombstone.
    EXPECT_TRUE(store_->apply("k", Record{13, false, "back"}).value());
    EXPECT_EQ(store_->get("k").value(), "back");

    // Absent key: any version is written; a tombstone's value is dropped.
    EXPECT_TRUE(store_->apply("fresh", Record{0, true, "ignored"}).value());
    EXPECT_EQ(store_->read("fresh").value(), (Record{0, true, ""}));

    // apply() compares with what put() and del() stored.
    ASSERT_TRUE(store_->put("p", "put", 20));
    EXPECT_FALSE(store_->apply("p", Record{19, false, "stale"}).value());
    EXPECT_TRUE(store_->apply("p", Record{21, false, "fresh"}).value());
    EXPECT_EQ(store_->get("p").value(), "fresh");
}

TEST_F(KeyStoreTest, ApplyChecksArgumentsAndStoredBytes) {
    KeyStoreOptions options;
    options.key_bytes_max = 8;
    options.value_bytes_max = 16;
    store_.reset();
    open_store(options);

    EXPECT_EQ(store_->apply("", Record{1, false, "v"}).error(), Errc::invalid_argument);
    EXPECT_EQ(store_->apply("123456789", Record{1, false, "v"}).error(), Errc::too_large);
    EXPECT_EQ(store_->apply("123456789", Record{1, true, ""}).error(), Errc::too_large);
    EXPECT_EQ(store_->apply("k", Record{1, false, std::string(17, 'v')}).error(), Errc::too_large);
    EXPECT_EQ(store_->read("k").error(), Errc::not_found);
    // A tombstone's value is never stored, so it is not held to value_bytes_max.
    EXPECT_TRUE(store_->apply("t", Record{1, true, std::string(17, 'v')}).value());
    EXPECT_EQ(store_->read("t").value(), (Record{1, true, ""}));

    // A stored record that does not decode is reported, not overwritten.
    write_raw(encode_data_key("bad"), "xy");
    auto applied = store_->apply("bad", Record{99, false, "v"});
    ASSERT_FALSE(applied);
    EXPECT_EQ(applied.error(), Errc::corruption);
    EXPECT_EQ(store_->read("bad").error(), Errc::corruption);
}

TEST_F(KeyStoreTest, ApplyBatchIsLastWriterWinsPerKey) {
    ASSERT_TRUE(store_->put("old", "stored", 10));
    ASSERT_TRUE(store_->put("new", "stored", 10));
    ASSERT_TRUE(store_->del("dead", 10));
    ASSERT_TRUE(store_->put("gone", "stored", 10));

    const std::vector<Entry> entries{
        entry_of("old", 5, false, "older"),    // stored copy is newer: skipped
        entry_of("new", 20, false, "newer"),   // written
        entry_of("dead", 11, false, "alive"),  // a newer value beats the tombstone
        entry_of("gone", 11, true),            // a newer tombstone beats the value
        entry_of("fresh", 1, true),            // absent: written
        entry_of("dup", 3, false, "a"),        // duplicates: the highest version wins...
        entry_of("dup", 7, false, "b"),       entry_of("dup", 5, false, "c"),
        entry_of("same", 4, false, "first"),  // ...and of equal versions the first
        entry_of("same", 4, false, "second"),
    };
    auto written = store_->apply_batch(entries);
    ASSERT_TRUE(written) << written.error().message();
    EXPECT_EQ(*written, 6u);

    EXPECT_EQ(store_->read("old").value(), (Record{10, false, "stored"}));
    EXPECT_EQ(store_->read("new").value(), (Record{20, false, "newer"}));
    EXPECT_EQ(store_->read("dead").value(), (Record{11, false, "alive"}));
    EXPECT_EQ(store_->read("gone").value(), (Record{11, true, ""}));
    EXPECT_EQ(store_->read("fresh").value(), (Record{1, true, ""}));
    EXPECT_EQ(store_->read("dup").value(), (Record{7, false, "b"}));
    EXPECT_EQ(store_->read("same").value(), (Record{4, false, "first"}));

    // Applying the same entries again changes nothing.
    EXPECT_EQ(store_->apply_batch(entries).value(), 0u);
    EXPECT_EQ(store_->apply_batch({}).value(), 0u);
}

TEST_F(KeyStoreTest, InvalidApplyBatchWritesNothing) {
    KeyStoreOptions options;
    options.key_bytes_max = 8;
    options.value_bytes_max = 16;
    options.batch_bytes_max = 40;
    store_.reset();
    open_store(options);

    const Entry good = entry_of("good", 1, false, "v");
    EXPECT_EQ(store_->apply_batch({good, entry_of("", 1, false, "v")}).error(),
              Errc::invalid_argument);
    Entry wrong_id = entry_of("k", 1, false, "v");
    wrong_id.key_id = NodeId::hash("other");
    EXPECT_EQ(store_->apply_batch({good, wrong_id}).error(), Errc::invalid_argument);
    EXPECT_EQ(store_->apply_batch({good, entry_of("123456789", 1, true)}).error(), Errc::too_large);
    EXPECT_EQ(store_->apply_batch({good, entry_of("k", 1, false, std::string(17, 'v'))}).error(),
              Errc::too_large);
    auto over = store_->apply_batch({entry_of("a", 1, false, std::string(16, 'v')),
                                     entry_of("b", 1, false, std::string(16, 'v')),
                                     entry_of("c", 1, false, std::string(16, 'v'))});
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error(), Errc::too_large);
    EXPECT_NE(over.error().detail().find("batch_bytes_max"), std::string::npos);

    EXPECT_EQ(store_->read("good").error(), Errc::not_found);
    EXPECT_EQ(store_->read("a").error(), Errc::not_found);
    const NodeId zero;
    EXPECT_TRUE(scan_all(zero, zero, 10).empty());
}

// Four threads walk the same fresh keys in the same order, released together, each writing
// every key once at its own random version: two through apply(), two through apply_batch().
// Every key must end at the highest version written. A read-compare-write that is not atomic
// lets threads that read "nothing stored" at the same moment overwrite each other in any
// order, leaving a lower version.
TEST_F(KeyStoreTest, ConcurrentApplyKeepsTheMaxVersion) {
    constexpr std::size_t kKeys = 4000;
    constexpr int kThreads = 4;
    constexpr std::size_t kBatchEntries = 4;
    // The record for a (key, version) is fixed, so equal versions are truly the same write.
    auto record_for = [](const std::string& key, std::uint64_t version) {
        const bool tombstone = version % 3 == 0;
        return Record{version, tombstone, tombstone ? "" : key + "@" + std::to_string(version)};
    };
    auto key_of = [](std::size_t i) { return "key-" + std::to_string(i); };

    std::vector<std::vector<std::uint64_t>> versions(kThreads, std::vector<std::uint64_t>(kKeys));
    for (int t = 0; t < kThreads; ++t) {
        std::mt19937_64 rng(7000 + static_cast<std::uint64_t>(t));
        for (auto& version : versions[static_cast<std::size_t>(t)]) {
            version = 1 + rng() % 1'000'000;
        }
    }
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            const auto& mine = versions[static_cast<std::size_t>(t)];
            ++ready;
            while (ready < kThreads) std::this_thread::yield();
            const std::size_t step = t % 2 == 0 ? 1 : kBatchEntries;
            for (std::size_t k = 0; k < kKeys; k += step) {
                if (step == 1) {
                    auto applied = store_->apply(key_of(k), record_for(key_of(k), mine[k]));
                    ASSERT_TRUE(applied) << applied.error().message();
                    continue;
                }
                std::vector<Entry> entries;
                for (std::size_t e = k; e < std::min(k + step, kKeys); ++e) {
                    const std::string key = key_of(e);
                    entries.push_back(Entry{NodeId::hash(key), key, record_for(key, mine[e])});
                }
                auto applied = store_->apply_batch(entries);
                ASSERT_TRUE(applied) << applied.error().message();
            }
        });
    }
    for (auto& thread : threads) thread.join();

    std::size_t wrong = 0;
    for (std::size_t k = 0; k < kKeys; ++k) {
        std::uint64_t expected = 0;
        for (const auto& thread_versions : versions) {
            expected = std::max(expected, thread_versions[k]);
        }
        auto record = store_->read(key_of(k));
        ASSERT_TRUE(record) << record.error().message();
        if (*record != record_for(key_of(k), expected)) ++wrong;
    }
    EXPECT_EQ(wrong, 0u) << "keys not at their highest version, of " << kKeys;
}

// --- tombstone purge ---------------------------------------------------------------------

TEST_F(KeyStoreTest, PurgeRemovesOnlyOldTombstones) {
    for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE(store_->del("old-" + std::to_string(i), static_cast<std::uint64_t>(i + 1)));
    }
    ASSERT_TRUE(store_->del("at-limit", 50));  // not below version_before: kept
    ASSERT_TRUE(store_->del("newer", 60));
    ASSERT_TRUE(store_->put("old-value", "v", 1));  // values are never purged, however old
    ASSERT_TRUE(store_->put("new-value", "v", 99));

    EXPECT_EQ(store_->purge_tombstones(50, 0).error(), Errc::invalid_argument);
    // keys_max bounds each call; calls continue until none is left.
    EXPECT_EQ(store_->purge_tombstones(50, 4).value(), 4u);
    EXPECT_EQ(store_->purge_tombstones(50, 4).value(), 4u);
    EXPECT_EQ(store_->purge_tombstones(50, 4).value(), 2u);
    EXPECT_EQ(store_->purge_tombstones(50, 4).value(), 0u);

    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(store_->read("old-" + std::to_string(i)).error(), Errc::not_found);
    }
    EXPECT_EQ(store_->read("at-limit").value(), (Record{50, true, ""}));
    EXPECT_EQ(store_->read("newer").value(), (Record{60, true, ""}));
    EXPECT_EQ(store_->read("old-value").value(), (Record{1, false, "v"}));
    EXPECT_EQ(store_->read("new-value").value(), (Record{99, false, "v"}));
    const NodeId zero;
    EXPECT_EQ(scan_all(zero, zero, 10).size(), 4u);

    // A purged key can be written again at any version.
    EXPECT_TRUE(store_->apply("old-3", Record{2, false, "again"}).value());
}

// A writer replaces old tombstones (with values or newer tombstones) while purges run; none
// of its writes may be deleted. A purge that deleted what it found without looking again under
// the key's stripe would delete some of them. The race is repeated over fresh keys, as one
// round may finish purging before the writer gets far.
TEST_F(KeyStoreTest, PurgeNeverDeletesARacingWrite) {
    constexpr int kRounds = 6;
    constexpr std::size_t kKeys = 3000;
    for (int round = 0; round < kRounds; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        std::vector<std::string> keys;
        WriteBatch batch;
        for (std::size_t i = 0; i < kKeys; ++i) {
            keys.push_back("race-" + std::to_string(round) + "-" + std::to_string(i));
            batch.del(keys.back(), 1);
        }
        ASSERT_TRUE(store_->write(batch));
        auto expected = [](std::size_t i) {
            const bool tombstone = i % 2 == 1;
            return Record{1000, tombstone, tombstone ? "" : "v"};
        };

        std::atomic<bool> writer_done{false};
        std::thread writer([&] {
            std::vector<std::size_t> order(kKeys);
            for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
            std::shuffle(order.begin(), order.end(),
                         std::mt19937_64(99 + static_cast<std::uint64_t>(round)));
            for (std::size_t i : order) {
                auto applied = store_->apply(keys[i], expected(i));
                ASSERT_TRUE(applied) << applied.error().message();
            }
            writer_done = true;
        });
        for (;;) {
            const bool done_before = writer_done;
            auto purged = store_->purge_tombstones(1000, 256);
            ASSERT_TRUE(purged) << purged.error().message();
            if (done_before && *purged == 0) break;
        }
        writer.join();

        std::size_t lost = 0;
        for (std::size_t i = 0; i < kKeys; ++i) {
            auto record = store_->read(keys[i]);
            if (!record || *record != expected(i)) ++lost;
        }
        ASSERT_EQ(lost, 0u) << "writes lost to the purge, of " << kKeys;
    }
}

// --- arc digests -------------------------------------------------------------------------

TEST_F(KeyStoreTest, DigestArgumentsAreChecked) {
    const NodeId zero;
    EXPECT_EQ(store_->digest(zero, zero, 0).error(), Errc::invalid_argument);
    EXPECT_EQ(store_->digest(zero, zero, kDigestBucketsMax + 1).error(), Errc::invalid_argument);
    auto widest = store_->digest(zero, zero, kDigestBucketsMax);
    ASSERT_TRUE(widest) << widest.error().message();
    EXPECT_EQ(widest->buckets.size(), kDigestBucketsMax);
    EXPECT_EQ(widest->counts.size(), kDigestBucketsMax);

    EXPECT_FALSE(digest_bucket_arc(zero, zero, 0, 0));
    EXPECT_FALSE(digest_bucket_arc(zero, zero, kDigestBucketsMax + 1, 0));
    EXPECT_FALSE(digest_bucket_arc(zero, zero, 4, 4));
    EXPECT_TRUE(digest_bucket_arc(zero, zero, 4, 3));
}

TEST_F(KeyStoreTest, DigestHashesTheDocumentedEntryLayout) {
    auto sha256 = [](const std::string& bytes) {
        std::array<std::uint8_t, 32> out{};
        unsigned int len = 0;
        EXPECT_EQ(EVP_Digest(bytes.data(), bytes.size(), out.data(), &len, EVP_sha256(), nullptr),
                  1);
        return out;
    };
    auto be64 = [](std::uint64_t v) {
        std::string out;
        for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
        return out;
    };
    const NodeId zero;
    auto empty = store_->digest(zero, zero, 2);
    ASSERT_TRUE(empty) << empty.error().message();
    // SHA-256 of nothing, for every empty bucket.
    const std::array<std::uint8_t, 32> sha256_empty{0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
                                                    0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
                                                    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
                                                    0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};
    EXPECT_EQ(empty->buckets, (std::vector<std::array<std::uint8_t, 32>>(2, sha256_empty)));
    EXPECT_EQ(empty->counts, (std::vector<std::uint64_t>{0, 0}));

    ASSERT_TRUE(store_->put("apple", "red", 0x0102));
    ASSERT_TRUE(store_->del("pear", 7));
    // Ring order after zero: by key id.
    std::vector<std::pair<std::string, std::string>> ordered{
        {"apple", be64(0x0102) + '\x00'},
        {"pear", be64(7) + '\x01'},
    };
    if (NodeId::hash("pear") < NodeId::hash("apple")) std::swap(ordered[0], ordered[1]);
    std::string fed;
    for (const auto& [key, version_and_flags] : ordered) {
        fed += be64(key.size()) + encode_data_key(key) + version_and_flags;
    }
    auto digest = store_->digest(zero, zero, 1);
    ASSERT_TRUE(digest) << digest.error().message();
    EXPECT_EQ(digest->buckets, (std::vector<std::array<std::uint8_t, 32>>{sha256(fed)}));
    EXPECT_EQ(digest->counts, (std::vector<std::uint64_t>{2}));
}

TEST_F(KeyStoreTest, DigestIsEqualForEqualVersionsWrittenInAnyOrder) {
    constexpr int kKeys = 400;
    std::vector<std::string> keys;
    for (int i = 0; i < kKeys; ++i) keys.push_back("d-" + std::to_string(i));
    auto final_version = [](int i) { return static_cast<std::uint64_t>(1000 + i); };

    // This store: the final records, written once in order.
    for (int i = 0; i < kKeys; ++i) {
        const std::string& key = keys[static_cast<std::size_t>(i)];
        if (i % 7 == 0) {
            ASSERT_TRUE(store_->del(key, final_version(i)));
        } else {
            ASSERT_TRUE(store_->put(key, "value", final_version(i)));
        }
    }
    // The other: shuffled, with older versions first and other value bytes (the version is
    // what identifies content).
    std::unique_ptr<KeyStore> other = open_other("other");
    ASSERT_NE(other, nullptr);
    std::vector<int> order(kKeys);
    for (int i = 0; i < kKeys; ++i) order[static_cast<std::size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(5));
    for (int i : order) {
        const std::string& key = keys[static_cast<std::size_t>(i)];
        ASSERT_TRUE(other->put(key, "early", 1));
        ASSERT_TRUE(other->apply(key, Record{final_version(i), i % 7 == 0, "different bytes"}));
    }

    std::vector<NodeId> ids;
    for (const auto& key : keys) ids.push_back(NodeId::hash(key));
    std::sort(ids.begin(), ids.end());
    const NodeId zero;
    struct Arc {
        const char* name;
        NodeId from;
        NodeId to;
    };
    const std::vector<Arc> arcs{
        {"whole ring after zero", zero, zero},
        {"whole ring after a key id", ids[100], ids[100]},
        {"ordered", ids[10], ids[200]},
        {"wrapping across zero", ids[kKeys - 50], ids[50]},
        {"from max to zero", NodeId::max(), zero},
    };
    const std::unique_ptr<KeyStore> empty = open_other("empty");
    ASSERT_NE(empty, nullptr);
    for (const Arc& arc : arcs) {
        for (std::size_t buckets : {std::size_t{1}, std::size_t{16}, kDigestBucketsMax}) {
            SCOPED_TRACE(std::string(arc.name) + ", " + std::to_string(buckets) + " buckets");
            auto mine = store_->digest(arc.from, arc.to, buckets);
            auto theirs = other->digest(arc.from, arc.to, buckets);
            ASSERT_TRUE(mine) << mine.error().message();
            ASSERT_TRUE(theirs) << theirs.error().message();
            EXPECT_EQ(*mine, *theirs);
            std::uint64_t total = 0;
            for (std::uint64_t count : mine->counts) total += count;
            const std::size_t in_arc = oracle_arc(keys, arc.from, arc.to).size();
            EXPECT_EQ(total, in_arc);
            // The comparison means something: content differs from an empty store's.
            auto nothing = empty->digest(arc.from, arc.to, buckets);
            ASSERT_TRUE(nothing) << nothing.error().message();
            if (in_arc > 0) {
                EXPECT_NE(*mine, *nothing);
            }
        }
    }
}

TEST_F(KeyStoreTest, DigestDifferenceIsLocalizedToTheKeysBucket) {
    constexpr int kKeys = 300;
    std::vector<std::string> keys;
    for (int i = 0; i < kKeys; ++i) keys.push_back("loc-" + std::to_string(i));
    auto fill = [&](KeyStore& store) {
        WriteBatch batch;
        for (int i = 0; i < kKeys; ++i) {
            batch.put(keys[static_cast<std::size_t>(i)], "v", static_cast<std::uint64_t>(i + 1));
        }
        ASSERT_TRUE(store.write(batch));
    };
    fill(*store_);
    std::vector<std::pair<NodeId, std::string>> ring;  // (id, key) in ring order
    for (const auto& key : keys) ring.emplace_back(NodeId::hash(key), key);
    std::sort(ring.begin(), ring.end());

    struct Variant {
        const char* name;
        std::function<void(KeyStore&, const std::string&)> change;
        bool count_changes;
    };
    const std::vector<Variant> variants{
        {"newer version",
         [](KeyStore& store, const std::string& key) {
             const Record stored = store.read(key).value();
             ASSERT_TRUE(store.put(key, stored.value, stored.version + 1));
         },
         false},
        {"missing key",
         [](KeyStore& store, const std::string& key) {
             // Only purge deletes physically: tombstone the key, then purge it.
             ASSERT_TRUE(store.del(key, 0));
             ASSERT_EQ(store.purge_tombstones(1, 10).value(), 1u);
             ASSERT_EQ(store.read(key).error(), Errc::not_found);
         },
         true},
        {"tombstone at the same version",
         [](KeyStore& store, const std::string& key) {
             const Record stored = store.read(key).value();
             ASSERT_TRUE(store.del(key, stored.version));
         },
         false},
    };
    struct Arc {
        const char* name;
        NodeId from;
        NodeId to;
    };
    const NodeId zero;
    const std::vector<Arc> arcs{
        {"whole ring", zero, zero},
        {"wrapping across zero", ring[kKeys - 80].first, ring[70].first},
    };
    constexpr std::size_t kBuckets = 16;
    // Keys just before and just after zero (inside the wrapping arc) and one outside it.
    const std::vector<std::string> changed{ring[kKeys - 10].second, ring[20].second,
                                           ring[150].second};

    int store_number = 0;
    for (const Variant& variant : variants) {
        for (const std::string& key : changed) {
            std::unique_ptr<KeyStore> other = open_other("other" + std::to_string(store_number++));
            ASSERT_NE(other, nullptr);
            fill(*other);
            variant.change(*other, key);
            for (const Arc& arc : arcs) {
                SCOPED_TRACE(std::string(variant.name) + ", " + key + ", " + arc.name);
                auto mine = store_->digest(arc.from, arc.to, kBuckets);
                auto theirs = other->digest(arc.from, arc.to, kBuckets);
                ASSERT_TRUE(mine) << mine.error().message();
                ASSERT_TRUE(theirs) << theirs.error().message();
                const NodeId id = NodeId::hash(key);
                if (!chord::in_open_closed(id, arc.from, arc.to)) {
                    EXPECT_EQ(*mine, *theirs);
                    continue;
                }
                const std::size_t expected = bucket_holding(id, arc.from, arc.to, kBuckets);
                ASSERT_LT(expected, kBuckets);
                for (std::size_t i = 0; i < kBuckets; ++i) {
                    EXPECT_EQ(mine->buckets[i] != theirs->buckets[i], i == expected)
                        << "bucket " << i;
                    EXPECT_EQ(mine->counts[i] != theirs->counts[i],
                              i == expected && variant.count_changes)
                        << "bucket " << i;
                }
            }
        }
    }
}

TEST_F(KeyStoreTest, DigestBucketsPartitionTheArc) {
    std::mt19937_64 rng(77);
    auto random_id = [&rng] { return random_node_id(rng); };
    const NodeId zero;
    const NodeId max = NodeId::max();
    const NodeId pivot = random_id();
    struct Arc {
        const char* name;
        NodeId from;
        NodeId to;
    };
    const std::vector<Arc> arcs{
        {"whole ring after zero", zero, zero},
        {"whole ring after a random id", pivot, pivot},
        {"random", random_id(), random_id()},
        {"wrapping across zero", max.prev(), NodeId::from_uint64(1'000'000)},
        {"from max", max, NodeId::from_uint64(12345)},
        {"to max", NodeId::from_uint64(7), max},
    };
    for (const Arc& arc : arcs) {
        for (std::size_t buckets :
             {std::size_t{1}, std::size_t{3}, std::size_t{16}, kDigestBucketsMax}) {
            SCOPED_TRACE(std::string(arc.name) + ", " + std::to_string(buckets) + " buckets");
            NodeId at = arc.from;
            NodeId shortest = max;
            NodeId longest;
            for (std::size_t i = 0; i < buckets; ++i) {
                auto sub = digest_bucket_arc(arc.from, arc.to, buckets, i);
                ASSERT_TRUE(sub) << "bucket " << i;
                ASSERT_EQ(sub->first, at) << "bucket " << i;
                at = sub->second;
                // The whole ring in one bucket has length 2^160, which NodeId cannot hold.
                if (buckets == 1) continue;
                const NodeId length = chord::distance(sub->first, sub->second);
                shortest = std::min(shortest, length);
                longest = std::max(longest, length);
            }
            EXPECT_EQ(at, arc.to);
            if (buckets > 1) {
                EXPECT_LE(longest, shortest.next());
            }
        }
    }

    // An arc of 3 ids in 8 buckets: 3 buckets of one id each, the others empty.
    const NodeId from = NodeId::from_uint64(5);
    const NodeId to = NodeId::from_uint64(8);
    std::vector<NodeId> ends;
    for (std::size_t i = 0; i < 8; ++i) {
        if (auto sub = digest_bucket_arc(from, to, 8, i)) {
            EXPECT_EQ(sub->second, sub->first.next());
            ends.push_back(sub->second);
        }
    }
    EXPECT_EQ(ends, (std::vector<NodeId>{NodeId::from_uint64(6), NodeId::from_uint64(7),
                                         NodeId::from_uint64(8)}));
    auto tiny = store_->digest(from, to, 8);
    ASSERT_TRUE(tiny) << tiny.error().message();
    EXPECT_EQ(tiny->counts, std::vector<std::uint64_t>(8, 0));
}

TEST_F(KeyStoreTest, DigestCountsFollowBucketArcsAcrossZero) {
    constexpr int kKeys = 500;
    std::vector<std::string> keys;
    WriteBatch batch;
    for (int i = 0; i < kKeys; ++i) {
        keys.push_back("z-" + std::to_string(i));
        if (i % 5 == 0) {
            batch.del(keys.back(), 3);
        } else {
            batch.put(keys.back(), "v", 3);
        }
    }
    ASSERT_TRUE(store_->write(batch));
    std::vector<NodeId> ids;
    for (const auto& key : keys) ids.push_back(NodeId::hash(key));
    std::sort(ids.begin(), ids.end());

    const NodeId from = ids[kKeys - 120];
    const NodeId to = ids[110];
    for (std::size_t buckets : {std::size_t{7}, std::size_t{64}}) {
        SCOPED_TRACE(std::to_string(buckets) + " buckets");
        auto digest = store_->digest(from, to, buckets);
        ASSERT_TRUE(digest) << digest.error().message();
        std::vector<std::uint64_t> expected(buckets, 0);
        for (const auto& key : keys) {
            const NodeId id = NodeId::hash(key);
            if (!chord::in_open_closed(id, from, to)) continue;
            const std::size_t bucket = bucket_holding(id, from, to, buckets);
            ASSERT_LT(bucket, buckets);
            ++expected[bucket];
        }
        EXPECT_EQ(digest->counts, expected);
        std::uint64_t total = 0;
        for (std::uint64_t count : expected) total += count;
        EXPECT_EQ(total, 119u + 111u);
    }
}

TEST_F(KeyStoreTest, DigestReadsThroughASnapshot) {
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(store_->put("s-" + std::to_string(i), "v", 1));
    const NodeId zero;
    const ArcDigest before = store_->digest(zero, zero, 8).value();
    const std::unique_ptr<Snapshot> snapshot = store_->snapshot();
    ASSERT_TRUE(store_->apply("s-7", Record{2, false, "v"}).value());

    EXPECT_EQ(store_->digest(zero, zero, 8, snapshot.get()).value(), before);
    EXPECT_NE(store_->digest(zero, zero, 8).value(), before);
}

// --- misc --------------------------------------------------------------------------------

TEST_F(KeyStoreTest, ApproximateKeysCountsWrites) {
    auto empty = store_->approximate_keys();
    ASSERT_TRUE(empty) << empty.error().message();
    EXPECT_EQ(*empty, 0u);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(store_->put("n" + std::to_string(i), "v", 1));
    auto count = store_->approximate_keys();
    ASSERT_TRUE(count) << count.error().message();
    EXPECT_GT(*count, 0u);
}

}  // namespace
}  // namespace chordkv::storage
