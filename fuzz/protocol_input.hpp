// The input format of fuzz_protocol, shared with the corpus generator.
//
// An input is a setup byte, then operations until the input ends:
//
//     setup  u8 % kSetupCount    ring: created as one of kRingMembers (create(now, members))
//                                alone: a ring of one (create(now))
//                                join: joining through kBootstrapAddress (join(now, ...))
//     op     u8 % kOpCount, then its operands:
//       deliver    u16 n, n bytes   a UDP datagram: decode_envelope (UDP limits, no key), then
//                                   handle(now, envelope) when it decodes
//       reply      u8 pick, u16 n, n bytes
//                                   a datagram decoded as for deliver, turned into the reply to
//                                   one of the requests the vnode sent and has not been answered
//                                   through this op: from = the peer asked, rpc_id = the
//                                   request's, reply = true. pick & kPickAny: the pick-th most
//                                   recent request of any type; else the pick-th most recent
//                                   one that this body answers (Pong: Ping, Neighbors:
//                                   GetNeighbors, FindNextReply: FindNext, LeaveAck: Leave).
//       advance    u16 ms           now += ms, then tick(now)
//       run_timers                  now = max(now, next_deadline()), then tick(now)
//       lookup     20 bytes         lookup(now, target)
//       leave                       leave(now)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "chord/messages.hpp"
#include "chord/node_id.hpp"

namespace chordkv::fuzz {

enum class Setup : std::uint8_t { ring = 0, alone = 1, join = 2 };
inline constexpr std::uint8_t kSetupCount = 3;

enum class Op : std::uint8_t {
    deliver = 0,
    reply = 1,
    advance = 2,
    run_timers = 3,
    lookup = 4,
    leave = 5,
};
inline constexpr std::uint8_t kOpCount = 6;

inline constexpr std::uint8_t kPickAny = 0x80;

// A ring larger than the successor list (8 by default), so lookups and fix_fingers need hops.
inline constexpr std::size_t kRingMembers = 12;
inline constexpr const char* kBootstrapAddress = "10.0.1.1:7400";

// The members of the created ring, in address order: "10.0.0.<i+1>:7400", id = SHA-1 of
// "<address>#0" (as a node derives vnode ids). The vnode under test is member kSelfIndex.
inline const std::vector<chord::Peer>& ring_members() {
    static const std::vector<chord::Peer> members = [] {
        std::vector<chord::Peer> out;
        for (std::size_t i = 0; i < kRingMembers; ++i) {
            const std::string address = "10.0.0." + std::to_string(i + 1) + ":7400";
            out.push_back(chord::Peer{chord::NodeId::hash(address + "#0"), address});
        }
        return out;
    }();
    return members;
}
inline constexpr std::size_t kSelfIndex = 0;

}  // namespace chordkv::fuzz
