// Admin and client requests over TCP (chordctl, chord::Client): one request frame, one reply
// frame with the same request_id; many may be in flight on one connection.
//
// Wire types 32..63 (the protocol's are below 32). Payloads are Boost.Serialization archives
// (net/codec.hpp encode_payload / decode_payload).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chord/messages.hpp"
#include "chord/node_id.hpp"

namespace chordkv::net {

enum class AdminType : std::uint8_t {
    info_request = 32,
    info_reply = 33,
    lookup_request = 34,
    lookup_reply = 35,
    leave_request = 36,
    leave_reply = 37,
    error_reply = 63,
};

// One vnode as its process sees it.
struct VnodeInfo {
    chord::NodeId id;
    std::uint8_t state = 0;  // chord::MemberState
    std::optional<chord::Peer> predecessor;
    std::vector<chord::Peer> successors;
    std::uint32_t fingers_set = 0;  // fingers that point somewhere
    std::uint64_t lookups_started = 0;
    std::uint64_t lookups_failed = 0;
    std::uint64_t lookup_hops = 0;
    std::uint64_t rpc_timeouts = 0;
    // Keys (InfoRequest::keys only; else 0): live keys in the vnode's arc, and live keys
    // this process holds as a replica in the vnode's span before the arc (see node.hpp).
    std::uint64_t keys_owned = 0;
    std::uint64_t replica_keys = 0;
    std::uint64_t tombstones = 0;  // in the whole span
    // Entries sent and received (applied) for the span: by handoff (join, leave) and by
    // replica maintenance.
    std::uint64_t handoff_keys_sent = 0;
    std::uint64_t handoff_keys_received = 0;
    std::uint64_t repair_keys_sent = 0;
    std::uint64_t repair_keys_received = 0;
    bool arc_settled = false;  // its arc has been synced with every replica holder
};

struct InfoRequest {
    std::uint64_t request_id = 0;
    bool keys = false;  // count each vnode's keys (reads every key's header)
};

struct InfoReply {
    std::uint64_t request_id = 0;
    std::string address;  // advertised
    std::string version;
    std::vector<VnodeInfo> vnodes;
    // Transport counters.
    std::uint64_t datagrams_received = 0;
    std::uint64_t frames_dropped = 0;
    std::uint64_t frames_unauthenticated = 0;
    std::uint64_t tcp_connections_dropped = 0;
    // Replica maintenance: keys received from and sent to replica holders, rounds run.
    std::uint64_t repair_keys_pulled = 0;
    std::uint64_t repair_keys_pushed = 0;
    std::uint64_t repair_rounds = 0;
    std::uint64_t tombstones_purged = 0;
    std::uint64_t copies_dropped = 0;  // copies erased once their new holders had them
    bool keys_counted = false;         // the VnodeInfo key counts are filled in
    // Of frames_unauthenticated: frames with a good MAC but a stale or repeated stamp.
    std::uint64_t frames_replayed = 0;
    // Writes refused because they reached the owner after their deadline (net/data.hpp).
    std::uint64_t expired_writes = 0;
};

struct LookupRequest {
    std::uint64_t request_id = 0;
    std::string key;  // the key's bytes; its id is SHA-1(key)
};

struct LookupReply {
    std::uint64_t request_id = 0;
    chord::NodeId key_id;
    chord::Peer owner;
    std::vector<chord::Peer> replicas;
    std::int32_t hops = 0;
    std::int32_t timeouts = 0;
};

// Asks the process to leave the ring gracefully: it hands its arcs to the processes that take
// them over, tells its neighbours, and exits. The reply goes out once the leave has started
// (handoff included); the connection closes when the process stops.
struct LeaveRequest {
    std::uint64_t request_id = 0;
};

struct LeaveReply {
    std::uint64_t request_id = 0;
    std::uint64_t keys_handed_off = 0;  // entries sent to the new owners and replica holders
};

// Any request can fail with this instead of its reply.
struct ErrorReply {
    std::uint64_t request_id = 0;
    std::int32_t code = 0;  // chordkv::Errc value
    std::string message;
};

}  // namespace chordkv::net
