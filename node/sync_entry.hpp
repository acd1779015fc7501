// Conversions between the wire's SyncEntry and the store's Entry, shared by replica
// maintenance (repair.cpp) and the handoff of a leaving process (handoff.cpp). Internal to
// the node library.
#pragma once

#include <cstddef>

#include "chord/node_id.hpp"
#include "net/data.hpp"
#include "storage/key_store.hpp"

namespace chordkv::detail {

// Bytes of values per sync batch (soft: a batch holds at least one entry). With one value at
// the 16 MiB limit a batch still fits a TCP frame (kTcpPayloadBytesMax).
inline constexpr std::size_t kSyncBatchBytesMax = 32 * 1024;

inline storage::Entry to_entry(const net::SyncEntry& e) {
    return storage::Entry{chord::NodeId::hash(e.key), e.key,
                          storage::Record{e.record.version, e.record.tombstone, e.record.value}};
}

inline net::SyncEntry to_sync(const storage::Entry& e) {
    return net::SyncEntry{e.key,
                          net::WireRecord{e.record.version, e.record.tombstone, e.record.value}};
}

}  // namespace chordkv::detail
