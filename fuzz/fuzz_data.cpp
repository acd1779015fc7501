// fuzz_data: every admin and data-path message payload (decode_admin<T>, net/admin_codec.hpp),
// then the pure steps the node and the client apply to a decoded message before it reaches
// RocksDB or a socket.
//
// Input:
//     0  index    into kMessageTypes (message_types.hpp), modulo its size
//     1  payload  the message's payload (no frame header: fuzz_frame covers that layer)
//
// Handling a data message proper needs a whole chordkv::Node (sockets, a RocksDB store, the
// vnodes' protocols), so it is not driven here. What is, per message, mirrors node/data_path.cpp,
// node/repair.cpp and node/client.cpp:
//   - keys become storage keys (storage/record.hpp) and records the stored bytes, which must
//     decode back to what was sent;
//   - versions go through the hybrid logical clock's observe() (chord/hlc.hpp);
//   - wire entries become store entries (node/sync_entry.hpp to_entry);
//   - a digest request's arc is cut into buckets (storage digest_bucket_arc), which must be
//     consecutive sub-arcs of the arc;
//   - a scan request's resume key is validated as KeyStore::scan does;
//   - a redirect's address is parsed (net/address.hpp), an error reply's code becomes an Error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chord/hlc.hpp"
#include "chord/node_id.hpp"
#include "chord/result.hpp"
#include "fuzz/fuzz_support.hpp"
#include "fuzz/message_types.hpp"
#include "net/address.hpp"
#include "node/sync_entry.hpp"
#include "storage/key_store.hpp"
#include "storage/record.hpp"

namespace chordkv::fuzz {
namespace {

constexpr auto kPhysicalMs = static_cast<std::uint64_t>(kNowMs);

// What the key store does with a key and a record it is asked to store: the stored bytes must
// decode to the same key and record.
void check_stored(std::string_view key, std::uint64_t version, bool tombstone,
                  std::string_view value) {
    const chord::NodeId key_id = chord::NodeId::hash(key);
    const std::string storage_key = storage::encode_data_key(key_id, key);
    auto data_key = storage::decode_data_key(storage_key);
    require(data_key.ok() == !key.empty(), "a storage key decodes iff its user key is non-empty");
    if (data_key) {
        require(data_key->key_id == key_id && data_key->key == key,
                "a storage key does not decode to the key it was made from");
    }
    const std::string bytes = storage::encode_record(version, tombstone, value);
    auto record = storage::decode_record(bytes, key);
    require(record.ok(), "an encoded record does not decode");
    require(record->version == version && record->tombstone == tombstone &&
                record->value == (tombstone ? std::string_view() : value),
            "an encoded record decodes to another record");
}

void check_wire_record(std::string_view key, const net::WireRecord& record) {
    // The replica observes the owner's version (data_path.cpp on_replicate): adopted unless
    // its physical part runs more than skew_max ahead, and then the clock does not move.
    chord::HybridClock clock;
    const bool adopted = clock.observe(record.version, kPhysicalMs);
    const auto skew_max_ms = static_cast<std::uint64_t>(clock.options().skew_max.count());
    require(adopted == (chord::hlc_physical_ms(record.version) <= kPhysicalMs + skew_max_ms),
            "HybridClock::observe decided against its skew bound");
    require(clock.last() == (adopted ? record.version : 0),
            "HybridClock::observe left the clock somewhere unexpected");
    if (adopted && chord::hlc_physical_ms(clock.last()) < chord::kHlcPhysicalMsMax) {
        require(clock.stamp(kPhysicalMs) > record.version,
                "a stamp after observe() does not order after the observed version");
    }
    check_stored(key, record.version, record.tombstone, record.value);
}

void check_entries(const std::vector<net::SyncEntry>& entries) {
    for (const net::SyncEntry& e : entries) {
        const storage::Entry entry = detail::to_entry(net::SyncEntry(e));  // it moves from a copy
        require(entry.key_id == chord::NodeId::hash(e.key) && entry.key == e.key &&
                    entry.record.value == e.record.value &&
                    entry.record.version == e.record.version,
                "to_entry changed the entry");
        check_wire_record(e.key, e.record);
    }
}

// The bucket sub-arcs of (from, to] must be consecutive: bucket 0 starts at `from`, each bucket
// starts where the previous one ended, the last ends at `to`. Checks the first, a middle and
// the last two buckets (all of them would make large bucket counts slow).
void check_buckets(const chord::NodeId& from, const chord::NodeId& to, std::uint32_t buckets) {
    auto arc = [&](std::size_t i) { return storage::digest_bucket_arc(from, to, buckets, i); };
    if (buckets == 0 || buckets > storage::kDigestBucketsMax) {
        require(!arc(0), "digest_bucket_arc accepted a bucket count out of range");
        return;
    }
    require(!arc(buckets), "digest_bucket_arc accepted an index past the last bucket");
    const std::size_t samples[] = {0, buckets / 2, buckets >= 2 ? buckets - 2u : 0u};
    for (std::size_t i : samples) {
        auto a = arc(i);
        if (!a) continue;  // an arc shorter than `buckets` ids leaves some buckets empty
        if (i == 0) require(a->first == from, "bucket 0 does not start at the arc's start");
        require(a->first != a->second || from == to, "a non-empty bucket is empty");
        if (i + 1 < buckets) {
            if (auto b = arc(i + 1)) {
                require(b->first == a->second, "a bucket does not start where the previous ends");
            }
        }
    }
    if (auto last = arc(buckets - 1)) {
        require(last->second == to, "the last bucket does not end at the arc's end");
    }
}

struct Checks {
    void operator()(const net::LookupRequest& m) const { (void)chord::NodeId::hash(m.key); }
    void operator()(const net::PutRequest& m) const {
        check_stored(m.key, kPhysicalMs << chord::kHlcLogicalBits, m.tombstone, m.value);
    }
    void operator()(const net::GetRequest& m) const { check_stored(m.key, 1, false, {}); }
    void operator()(const net::ReplicateRequest& m) const { check_wire_record(m.key, m.record); }
    void operator()(const net::ReadReplicaRequest& m) const { check_stored(m.key, 1, true, {}); }
    void operator()(const net::ReadReplicaReply& m) const {
        if (m.exists) check_wire_record("k", m.record);
    }
    void operator()(const net::SyncDigestRequest& m) const {
        check_buckets(m.from_exclusive, m.to_inclusive, m.buckets);
    }
    void operator()(const net::SyncScanRequest& m) const {
        // KeyStore::scan's validation of the resume key.
        if (m.resume_after) {
            if (auto key = storage::decode_data_key(*m.resume_after)) {
                (void)chord::in_open_closed(key->key_id, m.from_exclusive, m.to_inclusive);
            }
        }
    }
    void operator()(const net::SyncScanReply& m) const { check_entries(m.entries); }
    void operator()(const net::ReplicateBatchRequest& m) const { check_entries(m.entries); }
    void operator()(const net::ReplicateWritesRequest& m) const { check_entries(m.entries); }
    void operator()(const net::ReplicaSetReply& m) const {
        for (const auto& holder : m.holders) (void)net::parse_host_port(holder);
    }
    void operator()(const net::Redirect& m) const { (void)net::parse_host_port(m.owner_address); }
    void operator()(const net::ErrorReply& m) const {
        const Error error(Errc(m.code), m.message);
        require(!error.message().empty(), "an error has an empty message");
    }
    // Messages that carry nothing the receiver computes with before using them.
    template <class T>
    void operator()(const T&) const {}
};

}  // namespace
}  // namespace chordkv::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace chordkv;
    fuzz::ByteReader in(data, size);
    const std::uint8_t type = fuzz::kMessageTypes[in.u8() % fuzz::kMessageTypeCount];
    fuzz::decode_message(type, in.rest(), fuzz::Checks{});
    return 0;
}
