// Every admin and data-path message a TCP peer can send (net/admin.hpp, net/data.hpp), decoded
// the way the node and the client decode them (net/admin_codec.hpp decode_admin<T>). Shared by
// fuzz_frame, fuzz_data and the corpus generator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_support.hpp"
#include "net/admin_codec.hpp"

namespace chordkv::fuzz {

// The wire type of every admin and data message, in a fixed order: fuzz_data's first input byte
// indexes this table. A new message type goes here and into decode_message() below.
inline constexpr std::uint8_t kMessageTypes[] = {
    net::admin_type<net::InfoRequest>(),
    net::admin_type<net::InfoReply>(),
    net::admin_type<net::LookupRequest>(),
    net::admin_type<net::LookupReply>(),
    net::admin_type<net::LeaveRequest>(),
    net::admin_type<net::LeaveReply>(),
    net::admin_type<net::ErrorReply>(),
    net::admin_type<net::PutRequest>(),
    net::admin_type<net::PutReply>(),
    net::admin_type<net::GetRequest>(),
    net::admin_type<net::GetReply>(),
    net::admin_type<net::Redirect>(),
    net::admin_type<net::ReplicateRequest>(),
    net::admin_type<net::ReplicateReply>(),
    net::admin_type<net::ReadReplicaRequest>(),
    net::admin_type<net::ReadReplicaReply>(),
    net::admin_type<net::SyncDigestRequest>(),
    net::admin_type<net::SyncDigestReply>(),
    net::admin_type<net::SyncScanRequest>(),
    net::admin_type<net::SyncScanReply>(),
    net::admin_type<net::ReplicateBatchRequest>(),
    net::admin_type<net::ReplicateBatchReply>(),
    net::admin_type<net::ReplicaSetRequest>(),
    net::admin_type<net::ReplicaSetReply>(),
    net::admin_type<net::ReplicateWritesRequest>(),
    net::admin_type<net::ReplicateWritesReply>(),
};
inline constexpr std::size_t kMessageTypeCount = sizeof(kMessageTypes) / sizeof(kMessageTypes[0]);

// Decodes `payload` as a T. When it decodes, requires that re-encoding is a fixed point (the
// message encodes to bytes that decode to a message that encodes to the same bytes), then passes
// the message to `visit`. Returns whether the payload decoded.
template <class T, class Visit>
bool decode_checked(std::string_view payload, Visit& visit) {
    auto message = net::decode_admin<T>(payload);
    if (!message) {
        require(message.code() == Errc::malformed_message,
                "decode_admin failed with an error other than malformed_message");
        return false;
    }
    const std::string bytes = net::encode_payload(*message);
    auto again = net::decode_admin<T>(bytes);
    require(again.ok(), "a decoded message re-encodes to bytes that do not decode");
    require(net::encode_payload(*again) == bytes,
            "decode/encode of a message is not a fixed point");
    visit(*message);
    return true;
}

// Decodes `payload` as the admin or data message that frame type `type` names and, when it
// decodes, calls visit(message) (a generic callable). Returns false for a protocol or unknown
// type and for a payload that does not decode.
template <class Visit>
bool decode_message(std::uint8_t type, std::string_view payload, Visit&& visit) {
    using namespace net;
    switch (type) {
        case admin_type<InfoRequest>():
            return decode_checked<InfoRequest>(payload, visit);
        case admin_type<InfoReply>():
            return decode_checked<InfoReply>(payload, visit);
        case admin_type<LookupRequest>():
            return decode_checked<LookupRequest>(payload, visit);
        case admin_type<LookupReply>():
            return decode_checked<LookupReply>(payload, visit);
        case admin_type<LeaveRequest>():
            return decode_checked<LeaveRequest>(payload, visit);
        case admin_type<LeaveReply>():
            return decode_checked<LeaveReply>(payload, visit);
        case admin_type<ErrorReply>():
            return decode_checked<ErrorReply>(payload, visit);
        case admin_type<PutRequest>():
            return decode_checked<PutRequest>(payload, visit);
        case admin_type<PutReply>():
            return decode_checked<PutReply>(payload, visit);
        case admin_type<GetRequest>():
            return decode_checked<GetRequest>(payload, visit);
        case admin_type<GetReply>():
            return decode_checked<GetReply>(payload, visit);
        case admin_type<Redirect>():
            return decode_checked<Redirect>(payload, visit);
        case admin_type<ReplicateRequest>():
            return decode_checked<ReplicateRequest>(payload, visit);
        case admin_type<ReplicateReply>():
            return decode_checked<ReplicateReply>(payload, visit);
        case admin_type<ReadReplicaRequest>():
            return decode_checked<ReadReplicaRequest>(payload, visit);
        case admin_type<ReadReplicaReply>():
            return decode_checked<ReadReplicaReply>(payload, visit);
        case admin_type<SyncDigestRequest>():
            return decode_checked<SyncDigestRequest>(payload, visit);
        case admin_type<SyncDigestReply>():
            return decode_checked<SyncDigestReply>(payload, visit);
        case admin_type<SyncScanRequest>():
            return decode_checked<SyncScanRequest>(payload, visit);
        case admin_type<SyncScanReply>():
            return decode_checked<SyncScanReply>(payload, visit);
        case admin_type<ReplicateBatchRequest>():
            return decode_checked<ReplicateBatchRequest>(payload, visit);
        case admin_type<ReplicateBatchReply>():
            return decode_checked<ReplicateBatchReply>(payload, visit);
        case admin_type<ReplicaSetRequest>():
            return decode_checked<ReplicaSetRequest>(payload, visit);
        case admin_type<ReplicaSetReply>():
            return decode_checked<ReplicaSetReply>(payload, visit);
        case admin_type<ReplicateWritesRequest>():
            return decode_checked<ReplicateWritesRequest>(payload, visit);
        case admin_type<ReplicateWritesReply>():
            return decode_checked<ReplicateWritesReply>(payload, visit);
        default:
            return false;
    }
}

}  // namespace chordkv::fuzz
