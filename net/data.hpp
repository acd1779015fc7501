// Data-path messages over TCP: client put/get/delete to any node, and node-to-node replication
// and replica reads. Like every TCP request and reply, each payload starts with its u64
// request_id (the reply echoes it). Wire types 40..59.
//
//   client ──PutRequest / GetRequest──► any node
//          ◄── PutReply / GetReply ─────  when it owns the key (it coordinates)
//          ◄── Redirect ────────────────  otherwise: the owner it believes in
//   owner ──ReplicateRequest──► replica ──ReplicateReply──► owner   (W copies acknowledge)
//   owner ──ReadReplicaRequest──► replica ──ReadReplicaReply──► owner (fallback, quorum)
#pragma once

#include <cstdint>
#include <string>

#include "chord/node_id.hpp"

namespace chordkv::net {

enum class DataType : std::uint8_t {
    put_request = 40,
    put_reply = 41,
    get_request = 42,
    get_reply = 43,
    redirect = 44,
    replicate_request = 45,
    replicate_reply = 46,
    read_replica_request = 47,
    read_replica_reply = 48,
};

// A stored record as it travels: the owner's version stamp (hybrid logical clock), whether it
// is a delete, and the value bytes.
struct WireRecord {
    std::uint64_t version = 0;
    bool tombstone = false;
    std::string value;
};

// put (tombstone = false) or delete (tombstone = true, value empty).
struct PutRequest {
    std::uint64_t request_id = 0;
    std::string key;
    std::string value;
    bool tombstone = false;
};

struct PutReply {
    std::uint64_t request_id = 0;
    std::uint64_t version = 0;   // the version the owner stamped
    std::uint8_t copies = 0;     // copies that had acknowledged when the reply was sent
};

struct GetRequest {
    std::uint64_t request_id = 0;
    std::string key;
    bool quorum = false;  // read every replica, return the newest, repair stale copies
};

struct GetReply {
    std::uint64_t request_id = 0;
    bool found = false;  // false: never written, or deleted
    std::uint64_t version = 0;
    std::string value;
};

// "Not mine": the node that is (as far as the sender knows) the key's owner.
struct Redirect {
    std::uint64_t request_id = 0;
    chord::NodeId owner_id;
    std::string owner_address;
};

struct ReplicateRequest {
    std::uint64_t request_id = 0;
    std::string key;
    WireRecord record;
};

struct ReplicateReply {
    std::uint64_t request_id = 0;
    bool applied = false;  // false: the replica already had this version or a newer one
};

struct ReadReplicaRequest {
    std::uint64_t request_id = 0;
    std::string key;
};

struct ReadReplicaReply {
    std::uint64_t request_id = 0;
    bool exists = false;  // a record (value or tombstone) is stored
    WireRecord record;
};

}  // namespace chordkv::net
