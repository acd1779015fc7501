// Where a joining process puts its vnodes: ids that take its share of the ring from the
// processes holding the most, rather than SHA-1("<address>#<i>") wherever it falls.
//
// With ids from SHA-1, V vnodes per process leave the shares uneven: at 8 vnodes, three
// processes on ports 7601-7603 own 37 / 19 / 44 % of the keys, and the busiest one bounds the
// tail. Cassandra's token allocation (allocate_tokens_for_local_replication_factor) fixes the
// same thing by placing a new node's tokens from the current ring; this does the same for
// primary ownership:
//
//   ring (vnode id → process, as a walk learned it), the joiner's name and vnode count V
//        │  target share of every process = its vnodes / (all vnodes + V)  (vnodes = weight)
//        ▼
//   V times: over every arc (a, b] of another process p, the best cut c = a + x (the new vnode
//   takes (a, c] from p) for  Σ (share - target)² / target ; keep the cut that lowers it most
//        │  x ≤ 0.999 of the arc (the old vnode keeps a piece) and ≤ 1.5 × what the joiner
//        │  still needs per vnode left (its vnodes spread over several arcs)
//        ▼
//   ids: the top 64 bits from the cut, the low 96 from SHA-1("<name>#<i>"), so two processes
//   that place from the same view get different ids
//
// Sequential joins stay within a few percent of even: at 8 vnodes, ten processes joining one
// at a time each own 0.97-1.07 of a fair share (SHA-1 ids: 0.44-1.69). Processes that place
// from the same view at once (started together) pick the same cuts, and the one whose low bits
// are smaller gets slivers: start joiners one at a time, as Cassandra asks of its allocation.
// Nothing moves vnodes later: a process that leaves gives its arcs to its successors.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "chord/node_id.hpp"

namespace chordkv::chord {

// `count` vnode ids for the process `name` joining `ring` (vnode id → the name of the process
// that serves it). Vnodes in `ring` that carry `name` are ignored (an earlier life of this
// process, which is gone). An empty ring, or one where no cut helps, gives the SHA-1 ids
// HashRing::point_id(name, i) for the vnodes left. The ids are distinct, none is in `ring`,
// and the result depends only on the arguments.
std::vector<NodeId> place_vnodes(const std::map<NodeId, std::string>& ring, std::uint32_t count,
                                 std::string_view name);

// The share of the ring each process owns (the arcs (predecessor, vnode] of its vnodes); the
// shares add up to 1. Empty for an empty ring.
std::map<std::string, double> ring_shares(const std::map<NodeId, std::string>& ring);

}  // namespace chordkv::chord
