// Data-path messages over TCP: client put/get/delete to any node, and node-to-node replication
// and replica reads. Like every TCP request and reply, each payload starts with its u64
// request_id (the reply echoes it). Wire types 40..59.
//
//   client ──PutRequest / GetRequest──► any node
//          ◄── PutReply / GetReply ─────  when it owns the key (it coordinates)
//          ◄── Redirect ────────────────  otherwise: the owner it believes in
//   owner ──ReplicateRequest──► replica ──ReplicateReply──► owner   (W copies acknowledge)
//   owner ──ReadReplicaRequest──► replica ──ReadReplicaReply──► owner (fallback, quorum)
//   owner ──ReplicateWritesRequest──► replica ──ReplicateWritesReply──► owner
//          (the writes one owner coordinated in one io turn, for one replica, in one message)
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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
    sync_digest_request = 49,
    sync_digest_reply = 50,
    sync_scan_request = 51,
    sync_scan_reply = 52,
    replicate_batch_request = 53,
    replicate_batch_reply = 54,
    replica_set_request = 55,
    replica_set_reply = 56,
    replicate_writes_request = 57,
    replicate_writes_reply = 58,
};

// A stored record as it travels: the owner's version stamp (hybrid logical clock), whether it
// is a delete, and the value bytes.
struct WireRecord {
    std::uint64_t version = 0;
    bool tombstone = false;
    std::string value;
};

// put (tombstone = false) or delete (tombstone = true, value empty).
//
// deadline_ms: wall-clock milliseconds since the Unix epoch (the sender's clock) after which the
// owner must not apply the write; 0 = none. A client sets it to the moment it stops waiting
// for the reply, so that a request delayed in the network (a cut link, TCP retransmitting for
// tens of seconds) cannot land after the client gave up and wrote a newer value elsewhere:
// the owner stamps versions on arrival, and such a late write would win last-writer-wins
// over the newer, acknowledged one. Clock skew between client and owner widens or narrows
// the window by the skew (the HLC assumes bounded skew too).
struct PutRequest {
    std::uint64_t request_id = 0;
    std::string key;
    std::string value;
    bool tombstone = false;
    std::uint64_t deadline_ms = 0;
};

// The deadline_ms of a request sent now that its sender waits `timeout` for.
inline std::uint64_t deadline_after(std::chrono::milliseconds timeout) {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now().time_since_epoch());
    return static_cast<std::uint64_t>((now + timeout).count());
}

struct PutReply {
    std::uint64_t request_id = 0;
    std::uint64_t version = 0;  // the version the owner stamped
    std::uint8_t copies = 0;    // copies that had acknowledged when the reply was sent
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

// --- replica maintenance (anti-entropy) ------------------------------------------------
//
//   owner ──SyncDigestRequest(arc, buckets)──► replica ──SyncDigestReply──► owner
//   for each bucket whose hash differs:
//   owner ──SyncScanRequest(sub-arc, after)──► replica ──SyncScanReply(entries)──► owner
//   owner ──ReplicateBatchRequest(owner's entries of the sub-arc)──► replica

struct SyncDigestRequest {
    std::uint64_t request_id = 0;
    chord::NodeId from_exclusive;
    chord::NodeId to_inclusive;
    std::uint32_t buckets = 0;
};

// Packed byte strings rather than vectors of primitives: Boost's binary archives write those
// with an array optimisation that the bounded decoder does not read back the same way.
struct SyncDigestReply {
    std::uint64_t request_id = 0;
    std::string hashes;  // 32 bytes per bucket, in bucket order
    std::string counts;  // 8 bytes (big-endian) per bucket
};

// Why entries move, for the counters in `chordctl stats`: anti-entropy, the handoff of an
// arc whose owner changed (a join next to the owner), or a leaving process's arcs. Dump is a
// client reading the arcs for `chordctl dump`.
enum class SyncPurpose : std::uint8_t { repair = 0, handoff = 1, dump = 2 };

struct SyncEntry {
    std::string key;
    WireRecord record;
};

struct SyncScanRequest {
    std::uint64_t request_id = 0;
    chord::NodeId from_exclusive;
    chord::NodeId to_inclusive;
    std::optional<std::string> resume_after;  // storage key of the last entry received
    std::uint32_t batch_keys_max = 0;
    std::uint8_t purpose = 0;  // SyncPurpose
};

struct SyncScanReply {
    std::uint64_t request_id = 0;
    std::vector<SyncEntry> entries;
    std::optional<std::string> resume_after;  // nullopt: the sub-arc is done
};

struct ReplicateBatchRequest {
    std::uint64_t request_id = 0;
    std::vector<SyncEntry> entries;
    std::uint8_t purpose = 0;  // SyncPurpose
};

struct ReplicateBatchReply {
    std::uint64_t request_id = 0;
    std::uint64_t applied = 0;
};

// The replication of client writes, gathered: every write an owner coordinated within one
// turn of its event loop and must copy to the same replica travels in one request (net/
// replication_queue.hpp). The replica applies the entries last writer wins per key (like
// ReplicateRequest), and answers ReplicateWritesReply once all are written (through the
// WAL): then it holds every entry at its version or newer. Any failure is an ErrorReply, and
// none of the entries counts as copied (some may have been written).
struct ReplicateWritesRequest {
    std::uint64_t request_id = 0;
    std::vector<SyncEntry> entries;
};

struct ReplicateWritesReply {
    std::uint64_t request_id = 0;
    std::uint64_t applied = 0;  // entries written (the others were held as new or newer)
};

// Which processes hold copies of a vnode's arc besides its own, as the vnode's process
// computes them for its writes. A process that may no longer be one of them asks before it
// drops its copies (node/replica_gc.cpp).
struct ReplicaSetRequest {
    std::uint64_t request_id = 0;
    chord::NodeId vnode;
};

struct ReplicaSetReply {
    std::uint64_t request_id = 0;
    bool owner = false;  // the vnode is a ring member of this process (else holders is empty)
    std::vector<std::string> holders;
};

}  // namespace chordkv::net
