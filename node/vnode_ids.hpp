// A process's vnode ids, kept in the store's metadata so that a restarted node comes back with
// the same place on the ring (DESIGN.md "Identifiers and ownership").
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "chord/node_id.hpp"
#include "chord/result.hpp"
#include "storage/key_store.hpp"

namespace chordkv {

// Metadata names in the store's "meta" column family.
inline constexpr std::string_view kMetaVnodeIds = "vnode_ids";   // 20 bytes per vnode
inline constexpr std::string_view kMetaAdvertise = "advertise";  // address the ids came from
// Which cluster the data dir belongs to: HMAC-SHA256(cluster key, "chordkv data dir"), or
// "none" for a cluster without a key (the key itself is never stored).
inline constexpr std::string_view kMetaClusterMark = "cluster_mark";

// The vnode ids persisted in `store`. Errors: not_found when none are (a new data dir);
// invalid_argument when it holds a different number than `vnodes` (the message says both);
// corruption when they do not decode; storage errors from the store.
Result<std::vector<chord::NodeId>> load_vnode_ids(storage::KeyStore& store, std::uint32_t vnodes);

// Persists `ids` (placed or derived from `advertise`) with `advertise`, for load_vnode_ids.
Status store_vnode_ids(storage::KeyStore& store, std::string_view advertise,
                       const std::vector<chord::NodeId>& ids);

// Returns the vnode ids persisted in `store`. On first use (none persisted) it derives
// `vnodes` ids as SHA-1("<advertise>#<i>") and persists them with `advertise`.
// Errors: invalid_argument when vnodes == 0 or the store holds a different number of vnodes
// than asked for (the message says both); corruption when the stored ids do not decode;
// storage errors from the store.
Result<std::vector<chord::NodeId>> load_or_create_vnode_ids(storage::KeyStore& store,
                                                            std::string_view advertise,
                                                            std::uint32_t vnodes);

// Checks that `store` belongs to the cluster of `cluster_key` (empty: no key), marking it on
// first use. invalid_argument, naming both sides, when the data dir was written by a process
// with another cluster key (or with a key when this one has none, or the reverse): its keys
// belong to another cluster and must not be served or handed to this one.
Status check_cluster_mark(storage::KeyStore& store, const std::string& cluster_key);

}  // namespace chordkv
