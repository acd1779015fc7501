// fuzz_record: what the key store decodes from disk (storage/record.hpp) — a storage key and a
// record value — from arbitrary bytes, as a broken disk or another program can leave them.
// Also the hex node ids of config files and the metadata's raw 20-byte ids (chord/node_id.hpp).
//
// Input: the bytes, taken whole as a record value, a storage key, a raw id and a hex id.
//
// Properties checked beyond "no crash, no sanitizer report, no leak": whatever decodes
// re-encodes to exactly the same bytes; failures are Errc::corruption; describe_key() output
// is printable ASCII.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "chord/node_id.hpp"
#include "fuzz/fuzz_support.hpp"
#include "storage/record.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace chordkv;
    using fuzz::require;
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    auto record = storage::decode_record(bytes, bytes);
    if (record) {
        require(storage::encode_record(record->version, record->tombstone, record->value) == bytes,
                "a decoded record does not re-encode to its bytes");
    } else {
        require(record.code() == Errc::corruption, "decode_record failed without corruption");
    }

    auto data_key = storage::decode_data_key(bytes);
    if (data_key) {
        require(!data_key->key.empty(), "a decoded storage key has an empty user key");
        require(storage::encode_data_key(data_key->key_id, data_key->key) == bytes,
                "a decoded storage key does not re-encode to its bytes");
    } else {
        require(data_key.code() == Errc::corruption, "decode_data_key failed without corruption");
    }

    for (char c : storage::describe_key(bytes)) {
        require(c >= 0x20 && c < 0x7f, "describe_key() let a non-printable byte through");
    }

    if (auto id = chord::NodeId::from_bytes(bytes)) {
        const auto& raw = id->bytes();
        require(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()) == bytes,
                "NodeId::from_bytes does not keep the bytes");
    }
    if (auto id = chord::NodeId::from_hex(bytes)) {
        const std::string hex = id->to_hex();
        require(hex.size() == bytes.size(), "NodeId::to_hex has another length than its input");
        for (std::size_t i = 0; i < hex.size(); ++i) {
            const char c = bytes[i];
            const char lower = (c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c;
            require(hex[i] == lower, "NodeId::from_hex / to_hex do not round-trip");
        }
    }
    return 0;
}
