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

// Returns the vnode ids persisted in `store`. On first use (none persisted) it derives
// `vnodes` ids as SHA-1("<advertise>#<i>") and persists them with `advertise`.
// Errors: invalid_argument when vnodes == 0 or the store holds a different number of vnodes
// than asked for (the message says both); corruption when the stored ids do not decode;
// storage errors from the store.
Result<std::vector<chord::NodeId>> load_or_create_vnode_ids(storage::KeyStore& store,
                                                            std::string_view advertise,
                                                            std::uint32_t vnodes);

}  // namespace chordkv
