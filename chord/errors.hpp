// chordkv's error codes: expected failures are values (STYLE.md 7).
//
// Every layer reports failures as `std::error_code` in `chordkv::error_category()`, usually
// inside a `Result<T>` (chord/result.hpp) that also keeps a human-readable message.
#pragma once

#include <string>
#include <system_error>

namespace chordkv {

enum class Errc {
    ok = 0,
    invalid_argument = 1,   // a caller passed something malformed (bad hex, bad size, ...)
    not_found = 2,          // the key, node or record does not exist (or is a tombstone)
    already_exists = 3,     // adding something that is already there
    empty_ring = 4,         // a lookup on a ring that has no nodes
    timed_out = 5,          // a peer did not answer before the deadline
    not_responsible = 6,    // this node does not own the key; the answer names who does
    malformed_message = 7,  // a frame or payload failed to decode
    too_large = 8,          // a key, value, frame or batch exceeds its limit
    storage_error = 9,      // the key store (RocksDB) failed; the message says how
    corruption = 10,        // stored bytes do not decode: the disk or another program wrote them
    busy = 11,              // a bounded queue or in-flight limit is full; retry later
    shutting_down = 12,     // the component is stopping and takes no new work
    unreachable = 13,       // no live node answers for the target
    unauthenticated = 14,   // a frame's MAC is missing or wrong
    hops_exceeded = 15,     // a lookup took more hops than its bound
};

const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

}  // namespace chordkv

namespace std {
template <>
struct is_error_code_enum<chordkv::Errc> : true_type {};
}  // namespace std
