// Wire encoding of the admin messages (net/admin.hpp): frame type = AdminType, payload = the
// Boost.Serialization archive of the struct (same rules as the protocol's, net/serialization).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "chord/result.hpp"
#include "net/admin.hpp"
#include "net/codec.hpp"
#include "net/data.hpp"
#include "net/serialization.hpp"

namespace chordkv::net {

// The frame type each admin message travels as.
template <typename T>
constexpr std::uint8_t admin_type();
template <>
constexpr std::uint8_t admin_type<InfoRequest>() {
    return static_cast<std::uint8_t>(AdminType::info_request);
}
template <>
constexpr std::uint8_t admin_type<InfoReply>() {
    return static_cast<std::uint8_t>(AdminType::info_reply);
}
template <>
constexpr std::uint8_t admin_type<LookupRequest>() {
    return static_cast<std::uint8_t>(AdminType::lookup_request);
}
template <>
constexpr std::uint8_t admin_type<LookupReply>() {
    return static_cast<std::uint8_t>(AdminType::lookup_reply);
}
template <>
constexpr std::uint8_t admin_type<LeaveRequest>() {
    return static_cast<std::uint8_t>(AdminType::leave_request);
}
template <>
constexpr std::uint8_t admin_type<LeaveReply>() {
    return static_cast<std::uint8_t>(AdminType::leave_reply);
}
template <>
constexpr std::uint8_t admin_type<ErrorReply>() {
    return static_cast<std::uint8_t>(AdminType::error_reply);
}

#define CHORDKV_DATA_TYPE(T, name)                        \
    template <>                                           \
    constexpr std::uint8_t admin_type<T>() {              \
        return static_cast<std::uint8_t>(DataType::name); \
    }
CHORDKV_DATA_TYPE(PutRequest, put_request)
CHORDKV_DATA_TYPE(PutReply, put_reply)
CHORDKV_DATA_TYPE(GetRequest, get_request)
CHORDKV_DATA_TYPE(GetReply, get_reply)
CHORDKV_DATA_TYPE(Redirect, redirect)
CHORDKV_DATA_TYPE(ReplicateRequest, replicate_request)
CHORDKV_DATA_TYPE(ReplicateReply, replicate_reply)
CHORDKV_DATA_TYPE(ReadReplicaRequest, read_replica_request)
CHORDKV_DATA_TYPE(ReadReplicaReply, read_replica_reply)
CHORDKV_DATA_TYPE(SyncDigestRequest, sync_digest_request)
CHORDKV_DATA_TYPE(SyncDigestReply, sync_digest_reply)
CHORDKV_DATA_TYPE(SyncScanRequest, sync_scan_request)
CHORDKV_DATA_TYPE(SyncScanReply, sync_scan_reply)
CHORDKV_DATA_TYPE(ReplicateBatchRequest, replicate_batch_request)
CHORDKV_DATA_TYPE(ReplicateBatchReply, replicate_batch_reply)
CHORDKV_DATA_TYPE(ReplicaSetRequest, replica_set_request)
CHORDKV_DATA_TYPE(ReplicaSetReply, replica_set_reply)
CHORDKV_DATA_TYPE(ReplicateWritesRequest, replicate_writes_request)
CHORDKV_DATA_TYPE(ReplicateWritesReply, replicate_writes_reply)
#undef CHORDKV_DATA_TYPE

// A complete frame carrying `message`, tagged with `key` when it is not null.
template <typename T>
std::string encode_admin(const T& message, const std::string* key) {
    return encode_message_frame(admin_type<T>(), message, key);
}

// The same frame appended to `out` (append_message_frame).
template <typename T>
void append_admin(std::string& out, const T& message, const std::string* key) {
    append_message_frame(out, admin_type<T>(), message, key);
}

// The message in a frame's payload. Errors: malformed_message.
template <typename T>
Result<T> decode_admin(std::string_view payload) {
    return decode_payload<T>(payload);
}

// The key of a PutRequest or GetRequest payload, read in place: both begin with the u64
// request id and the key (a u64 length, then its bytes). nullopt when the payload is shorter
// than the key it declares. A hint only (Node's prefetch of a read's keys): nothing else of
// the message is checked until it is decoded to be served.
inline std::optional<std::string_view> peek_request_key(std::string_view payload) noexcept {
    constexpr std::size_t kLengthAt = 8;  // after the request id
    constexpr std::size_t kKeyAt = kLengthAt + 8;
    if (payload.size() < kKeyAt) return std::nullopt;
    std::uint64_t length = 0;
    for (std::size_t i = 0; i < 8; ++i) {
        length |= std::uint64_t{static_cast<unsigned char>(payload[kLengthAt + i])} << (8 * i);
    }
    if (length > payload.size() - kKeyAt) return std::nullopt;
    return payload.substr(kKeyAt, static_cast<std::size_t>(length));
}

}  // namespace chordkv::net

// clang-format off: keep Boost's `ar & field & field` idiom readable.
namespace boost::serialization {

template <class Archive>
void serialize(Archive& ar, chordkv::net::VnodeInfo& m, const unsigned int) {
    ar& m.id& m.state& m.predecessor& m.successors& m.fingers_set& m.lookups_started& m
        .lookups_failed& m.lookup_hops& m.rpc_timeouts& m.keys_owned& m.replica_keys& m
        .tombstones& m.handoff_keys_sent& m.handoff_keys_received& m.repair_keys_sent& m
        .repair_keys_received& m.arc_settled;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::InfoRequest& m, const unsigned int) {
    ar& m.request_id& m.keys;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::InfoReply& m, const unsigned int) {
    ar& m.request_id& m.address& m.version& m.vnodes& m.datagrams_received& m.frames_dropped& m
        .frames_unauthenticated& m.tcp_connections_dropped& m.repair_keys_pulled& m
        .repair_keys_pushed& m.repair_rounds& m.tombstones_purged& m.copies_dropped& m
        .keys_counted& m.frames_replayed& m.expired_writes;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::LookupRequest& m, const unsigned int) {
    ar& m.request_id& m.key;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::LookupReply& m, const unsigned int) {
    ar& m.request_id& m.key_id& m.owner& m.replicas& m.hops& m.timeouts;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::LeaveRequest& m, const unsigned int) {
    ar& m.request_id;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::LeaveReply& m, const unsigned int) {
    ar& m.request_id& m.keys_handed_off;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::ErrorReply& m, const unsigned int) {
    ar& m.request_id& m.code& m.message;
}

template <class Archive>
void serialize(Archive& ar, chordkv::net::WireRecord& m, const unsigned int) {
    ar& m.version& m.tombstone& m.value;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::PutRequest& m, const unsigned int) {
    ar& m.request_id& m.key& m.value& m.tombstone& m.deadline_ms;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::PutReply& m, const unsigned int) {
    ar& m.request_id& m.version& m.copies;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::GetRequest& m, const unsigned int) {
    ar& m.request_id& m.key& m.quorum;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::GetReply& m, const unsigned int) {
    ar& m.request_id& m.found& m.version& m.value;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::Redirect& m, const unsigned int) {
    ar& m.request_id& m.owner_id& m.owner_address;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::ReplicateRequest& m, const unsigned int) {
    ar& m.request_id& m.key& m.record;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::ReplicateReply& m, const unsigned int) {
    ar& m.request_id& m.applied;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::ReadReplicaRequest& m, const unsigned int) {
    ar& m.request_id& m.key;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::ReadReplicaReply& m, const unsigned int) {
    ar& m.request_id& m.exists& m.record;
}

template <class Archive>
void serialize(Archive& ar, chordkv::net::SyncDigestRequest& m, const unsigned int) {
    ar& m.request_id& m.from_exclusive& m.to_inclusive& m.buckets;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::SyncDigestReply& m, const unsigned int) {
    ar& m.request_id& m.hashes& m.counts;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::SyncEntry& m, const unsigned int) {
    ar& m.key& m.record;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::SyncScanRequest& m, const unsigned int) {
    ar& m.request_id& m.from_exclusive& m.to_inclusive& m.resume_after& m.batch_keys_max& m.purpose;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::SyncScanReply& m, const unsigned int) {
    ar& m.request_id& m.entries& m.resume_after;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::ReplicateBatchRequest& m, const unsigned int) {
    ar& m.request_id& m.entries& m.purpose;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::ReplicateBatchReply& m, const unsigned int) {
    ar& m.request_id& m.applied;
}

template <class Archive>
void serialize(Archive& ar, chordkv::net::ReplicateWritesRequest& m, const unsigned int) {
    ar& m.request_id& m.entries;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::ReplicateWritesReply& m, const unsigned int) {
    ar& m.request_id& m.applied;
}

template <class Archive>
void serialize(Archive& ar, chordkv::net::ReplicaSetRequest& m, const unsigned int) {
    ar& m.request_id& m.vnode;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::ReplicaSetReply& m, const unsigned int) {
    ar& m.request_id& m.owner& m.holders;
}

}  // namespace boost::serialization
// clang-format on

CHORDKV_WIRE_STRUCT(chordkv::net::VnodeInfo)
CHORDKV_WIRE_STRUCT(std::vector<chordkv::net::VnodeInfo>)
CHORDKV_WIRE_STRUCT(chordkv::net::InfoRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::InfoReply)
CHORDKV_WIRE_STRUCT(chordkv::net::LookupRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::LookupReply)
CHORDKV_WIRE_STRUCT(chordkv::net::LeaveRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::LeaveReply)
CHORDKV_WIRE_STRUCT(chordkv::net::ErrorReply)
CHORDKV_WIRE_STRUCT(chordkv::net::WireRecord)
CHORDKV_WIRE_STRUCT(chordkv::net::PutRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::PutReply)
CHORDKV_WIRE_STRUCT(chordkv::net::GetRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::GetReply)
CHORDKV_WIRE_STRUCT(chordkv::net::Redirect)
CHORDKV_WIRE_STRUCT(chordkv::net::ReplicateRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::ReplicateReply)
CHORDKV_WIRE_STRUCT(chordkv::net::ReadReplicaRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::ReadReplicaReply)
CHORDKV_WIRE_STRUCT(chordkv::net::SyncDigestRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::SyncDigestReply)
CHORDKV_WIRE_STRUCT(chordkv::net::SyncEntry)
CHORDKV_WIRE_STRUCT(chordkv::net::ReplicaSetRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::ReplicaSetReply)
CHORDKV_WIRE_STRUCT(std::vector<std::string>)
CHORDKV_WIRE_STRUCT(std::vector<chordkv::net::SyncEntry>)
CHORDKV_WIRE_STRUCT(chordkv::net::SyncScanRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::SyncScanReply)
CHORDKV_WIRE_STRUCT(chordkv::net::ReplicateBatchRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::ReplicateBatchReply)
CHORDKV_WIRE_STRUCT(chordkv::net::ReplicateWritesRequest)
CHORDKV_WIRE_STRUCT(chordkv::net::ReplicateWritesReply)
