// Where a joining process puts its vnodes: ids that take its share of the ring from the
// processes holding the most, rather than SHA-1("<address>#<i>") wherever it falls.
//
// With ids from SHA-1, V vnodes per process leave the shares uneven: at 8 vnodes, three
// processes on ports 7601-7603 own 37 / 19 / 44 % of the keys, and the busiest one bounds the
// tail. Cassandra's token allocation (allocate_tokens_for_local_replication_factor) fixes the
// same thing by placing a new node's tokens from the current ring; this does the same for
// primary ownership:
//
//   ring (vnode id → process, as a walk learned it), the joiner's name and vnode count V,
//   the successor list's length r and the other processes o a list should name (options)
//        │  target of every process = its vnodes / (all vnodes + V)  (vnodes = weight);
//        │  each process over its target gives its excess, scaled to add up to the
//        │  joiner's target, in cuts proportional to what it gives (V cuts in all)
//        ▼
//   the arcs to cut, one at a time over the processes that give: the one whose cut leaves
//   the fewest successor lists (r entries) naming fewer than o other processes (capped at r
//   and at the processes already there, 1 when the joiner makes 2; o = 0 mends nothing), then one
//   inside a run of a process's vnodes, then one whose neighbourhood (4 vnodes either side,
//   the joiner's cuts so far included) holds the fewest processes, then the longest; after
//   each cut the arcs near it are scored again. A process whose chosen arcs are too short to
//   give its share cuts its longest instead. From each cut arc (a, b] the joiner takes the
//   same fraction: the new vnode c = a + x owns (a, c]
//        ▼
//   ids: the top 64 bits from the cut, the low 96 from SHA-1("<name>#<i>"), so two processes
//   that place from the same view get different ids
//
// Runs matter as much as shares: replicas go to the next distinct processes on a vnode's
// successor list (r entries), so a run of one process's vnodes longer than r leaves the vnodes
// before it to a slow fallback. Cutting only the largest arcs (a first version) balanced the
// shares but left runs of 39 vnodes at 5 processes of 128, and a quarter of the successor
// lists naming fewer than 2 other processes; a join then loaded keys 10 times slower, and
// copies that should have been dropped stayed. Preferring arcs in runs, then neighbourhoods
// counted once before any cut, fixed the runs but let the third joiner's cuts cluster: where
// none fell for 9 vnodes the first two processes alternated. With the names of
// placement_test, 11 of 96 lists were short at 3 x 32 vnodes and 13 of 384 at 3 x 128; over
// 40 other sets of names 4-28 (median 13) at 3 x 128, 8-46 of 768 at 3 x 256, 121-243 of
// 6,144 at 3 x 2048 (a fourth process mended them). Scoring each cut by the lists it mends,
// counted again as cuts are chosen, leaves none short after any join of 10 processes of 8,
// 32 or 128 vnodes, or of 3 of 256 or 2048, for all 41 sets, and still no two neighbours
// share a process. Unequal counts can still leave some: a first process of 256 vnodes, then
// two of 64, had 233 short lists over the 40 sets at 3 processes (5,571 before), because the
// second joiner's cuts, chosen with no third in view, fix where the third can go. The choice
// costs 2 ms at 3 x 128 vnodes and 40 ms at 3 x 2048 (0.3 and 5 ms before).
//
// All of that is for the defaults, r = 8 and o = 2 (R = 3); the options give a node's own.
// At r = 12 and o = 4 (R = 5), cuts spread for the defaults left 3 of 160 lists short at 5 x 32
// vnodes and 19 of 640 at 5 x 128; spread for the options, none after any join of 8 processes
// of 8, 32 or 128. Where o is nearly every other process some stay: r = 12, o = 5 left 8 of
// 192 at 6 x 32 (24 with the defaults' cuts) and 7 of 768 at 6 x 128 (131). Scoring an arc
// walks r lists of up to r entries, and a cut scores the arcs within r of it again: r = 12
// costs 2-3 times what r = 8 does, r = 64 (chordd's cap) 1.9 s at 3 x 1024 (24 ms at r = 8).
//
// From 2 to 10 processes joining one at a time, each owns its fair share exactly (to 1e-6),
// except when more processes are over their share than the joiner has vnodes: one is left
// without a cut and keeps its excess (within 0.11 of a fair share at the 10th process of 8
// vnodes). SHA-1 ids give 0.45-1.69 at 8 vnodes, 0.70-1.32 at 32. Processes that place
// from the same view at once (started together) pick the same cuts, and the one whose low bits
// are smaller gets slivers: start joiners one at a time, as Cassandra asks of its allocation.
// Nothing moves vnodes later: a process that leaves gives its arcs to its successors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "chord/node_id.hpp"

namespace chordkv::chord {

// What the cuts are spread for: the ring's successor lists and the replicas they carry. Give
// the joiner's own settings; the ring's other processes are assumed to use the same.
struct PlacementOptions {
    // Entries r of a vnode's successor list (ProtocolOptions::successors), where its replicas
    // go; the lists scored are this long. Default 8, ProtocolOptions' default.
    std::size_t successors = 8;
    // Processes o other than a vnode's own that its successor list should name: the replicas
    // after the owner (NodeOptions::replicas - 1). Capped at the other processes there are
    // and at `successors`; 0 (R = 1) mends nothing. Default 2, for R = 3.
    std::size_t others = 2;
};

// `count` vnode ids for the process `name` joining `ring` (vnode id → the name of the process
// that serves it). Vnodes in `ring` that carry `name` are ignored (an earlier life of this
// process, which is gone). An empty ring, or one where no cut helps, gives the SHA-1 ids
// HashRing::point_id(name, i) for the vnodes left. The ids are distinct, none is in `ring`,
// and the result depends only on the arguments. The cuts leave as few successor lists as they
// can naming fewer processes than `options` asks.
std::vector<NodeId> place_vnodes(const std::map<NodeId, std::string>& ring, std::uint32_t count,
                                 std::string_view name, const PlacementOptions& options = {});

// The share of the ring each process owns (the arcs (predecessor, vnode] of its vnodes); the
// shares add up to 1. Empty for an empty ring.
std::map<std::string, double> ring_shares(const std::map<NodeId, std::string>& ring);

}  // namespace chordkv::chord
