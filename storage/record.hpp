// On-disk encoding of the key store's data column family (DESIGN.md "Storage").
//
// Storage key = 20-byte big-endian key id (SHA-1 of the user key) + user key bytes:
//
//     +----------------------+-------------------+
//     | key id (20 B, BE)    | user key (>= 1 B) |
//     +----------------------+-------------------+
//
// so RocksDB's bytewise order is ring order and an arc (a, b] of key ids is one iterator
// range (two when it wraps past zero). The user key is kept so a scan can hand it back.
//
// Record value = fixed header + value bytes:
//
//     +----------------------+-----------+-------------+
//     | version (8 B, BE)    | flags (1) | value bytes |
//     +----------------------+-----------+-------------+
//     flags bit 0 = tombstone; every other bit must be zero.
//
// The version is a hybrid-logical-clock stamp chosen by the writer; the store never
// interprets it. A delete writes a tombstone (empty value) so handoff and repair cannot
// resurrect the key.
//
// Decoding is defensive (STYLE.md 5): bytes that do not match this layout were written by a
// broken disk or another program, and decode as Errc::corruption — never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "chord/node_id.hpp"
#include "chord/result.hpp"

namespace chordkv::storage {

// One stored version of a key: a live value or a tombstone.
struct Record {
    std::uint64_t version = 0;  // HLC stamp of the write; larger wins during repair
    bool tombstone = false;     // true: the key was deleted at `version`; value is empty
    std::string value;

    friend bool operator==(const Record& a, const Record& b) {
        return a.version == b.version && a.tombstone == b.tombstone && a.value == b.value;
    }
    friend bool operator!=(const Record& a, const Record& b) { return !(a == b); }
};

// A record together with the key it belongs to, as returned by arc scans.
struct Entry {
    chord::NodeId key_id;  // NodeId::hash(key)
    std::string key;       // the user key
    Record record;
};

// Bytes in the fixed record header: 8 version + 1 flags.
inline constexpr std::size_t kRecordHeaderBytes = 9;
// Flag bits defined by this format; any other set bit is corruption.
inline constexpr std::uint8_t kRecordFlagTombstone = 0x01;
inline constexpr std::uint8_t kRecordFlagsKnown = kRecordFlagTombstone;

// Storage key for `key`: NodeId::hash(key) followed by the key bytes.
std::string encode_data_key(std::string_view key);
// Storage key for a key whose id is already known (must equal NodeId::hash(key)).
std::string encode_data_key(const chord::NodeId& key_id, std::string_view key);

// The key id and user key of a storage key. Errc::corruption when the storage key is too
// short to hold a key id and a non-empty user key.
struct DataKey {
    chord::NodeId key_id;
    std::string key;
};
Result<DataKey> decode_data_key(std::string_view storage_key);

// The record bytes for a write. A tombstone ignores `value` and stores an empty one.
std::string encode_record(std::uint64_t version, bool tombstone, std::string_view value);

// Parses record bytes read for `key` (named in error messages). Errc::corruption when the
// bytes are shorter than the header, set an unknown flag bit, or are a tombstone carrying a
// value.
Result<Record> decode_record(std::string_view bytes, std::string_view key);

// `key` made safe for a log line or error message: printable ASCII kept, other bytes as
// \xNN, long keys cut to their first 64 bytes with a "...(N bytes)" suffix.
std::string describe_key(std::string_view key);

}  // namespace chordkv::storage
