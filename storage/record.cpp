#include "storage/record.hpp"

#include <cstdio>

namespace chordkv::storage {

namespace {

// Longest key prefix quoted in messages; binary keys up to key_bytes_max would drown a log.
constexpr std::size_t kDescribeKeyBytesMax = 64;

}  // namespace

std::string encode_data_key(std::string_view key) {
    return encode_data_key(chord::NodeId::hash(key), key);
}

std::string encode_data_key(const chord::NodeId& key_id, std::string_view key) {
    const auto& id = key_id.bytes();
    std::string out;
    out.reserve(id.size() + key.size());
    out.append(reinterpret_cast<const char*>(id.data()), id.size());
    out.append(key.data(), key.size());
    return out;
}

Result<DataKey> decode_data_key(std::string_view storage_key) {
    if (storage_key.size() <= chord::NodeId::kBytes) {
        return Error(Errc::corruption,
                     "storage key of " + std::to_string(storage_key.size()) +
                         " bytes is too short for a " + std::to_string(chord::NodeId::kBytes) +
                         "-byte key id and a non-empty key: " + describe_key(storage_key));
    }
    auto key_id = chord::NodeId::from_bytes(storage_key.substr(0, chord::NodeId::kBytes));
    // from_bytes only fails on a wrong length, which the check above rules out.
    return DataKey{*key_id, std::string(storage_key.substr(chord::NodeId::kBytes))};
}

std::string encode_record(std::uint64_t version, bool tombstone, std::string_view value) {
    if (tombstone) value = {};
    std::string out;
    out.reserve(kRecordHeaderBytes + value.size());
    for (int shift = 56; shift >= 0; shift -= 8) {
        out.push_back(static_cast<char>((version >> shift) & 0xff));
    }
    out.push_back(static_cast<char>(tombstone ? kRecordFlagTombstone : 0));
    out.append(value.data(), value.size());
    return out;
}

Result<Record> decode_record(std::string_view bytes, std::string_view key) {
    if (bytes.size() < kRecordHeaderBytes) {
        return Error(Errc::corruption, "record for key " + describe_key(key) + " has " +
                                           std::to_string(bytes.size()) +
                                           " bytes, shorter than the " +
                                           std::to_string(kRecordHeaderBytes) + "-byte header");
    }
    Record record;
    for (std::size_t i = 0; i < 8; ++i) {
        record.version = (record.version << 8) | static_cast<std::uint8_t>(bytes[i]);
    }
    const auto flags = static_cast<std::uint8_t>(bytes[8]);
    if ((flags & ~kRecordFlagsKnown) != 0) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", flags);
        return Error(Errc::corruption,
                     "record for key " + describe_key(key) + " has unknown flag bits " + hex);
    }
    record.tombstone = (flags & kRecordFlagTombstone) != 0;
    if (record.tombstone && bytes.size() > kRecordHeaderBytes) {
        return Error(Errc::corruption, "tombstone for key " + describe_key(key) + " carries " +
                                           std::to_string(bytes.size() - kRecordHeaderBytes) +
                                           " value bytes");
    }
    record.value.assign(bytes.substr(kRecordHeaderBytes));
    return record;
}

std::string describe_key(std::string_view key) {
    std::string out = "\"";
    const std::size_t shown = key.size() < kDescribeKeyBytesMax ? key.size() : kDescribeKeyBytesMax;
    for (std::size_t i = 0; i < shown; ++i) {
        const auto c = static_cast<unsigned char>(key[i]);
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out.push_back(static_cast<char>(c));
        } else {
            char esc[8];
            std::snprintf(esc, sizeof esc, "\\x%02x", c);
            out += esc;
        }
    }
    out.push_back('"');
    if (shown < key.size()) out += "...(" + std::to_string(key.size()) + " bytes)";
    return out;
}

}  // namespace chordkv::storage
