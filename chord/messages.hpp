// The protocol's messages: plain structs, no I/O and no serialization library here. The net
// layer gives each a wire encoding (Boost.Serialization, net/codec) and the simulator passes
// them by value.
//
// Every message travels in an Envelope that names the sending vnode (id and address) and the
// destination (address, and vnode id when known; a join's first request goes to an address
// whose vnode ids the joiner does not know yet). Requests carry a fresh rpc id; a reply echoes
// the id of its request and sets `reply`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "chord/node_id.hpp"

namespace chordkv::chord {

// A ring member: vnode id plus the address of the process hosting it ("host:port" on the
// wire, any opaque label in the simulator). Several vnodes share one address.
struct Peer {
    NodeId id;
    std::string address;

    friend bool operator==(const Peer& a, const Peer& b) {
        return a.id == b.id && a.address == b.address;
    }
    friend bool operator!=(const Peer& a, const Peer& b) { return !(a == b); }
};

using RpcId = std::uint64_t;

// --- requests and their replies ---------------------------------------------------------

// Liveness probe (rectify checks a predecessor with it). Reply: Pong.
struct Ping {};
struct Pong {};

// "Tell me your predecessor and successor list" — stabilize and join ask it.
struct GetNeighbors {};
struct Neighbors {
    std::optional<Peer> predecessor;
    std::vector<Peer> successors;  // the sender's successor list, nearest first
};

// One step of an iterative lookup for `target`.
struct FindNext {
    NodeId target;
};
// done: target ∈ (sender, sender.successor]; peers = the sender's successor list, so
//       peers[0] is the owner and the rest its replica successors.
// !done: peers = the sender's best candidates preceding target, closest first.
struct FindNextReply {
    bool done = false;
    std::vector<Peer> peers;
};

// Graceful leave: the leaving vnode hands its neighbours what they need to close the gap.
// To the successor: its predecessor. To the predecessor: its successor list. Reply: LeaveAck.
struct Leave {
    std::optional<Peer> predecessor;
    std::vector<Peer> successors;
};
struct LeaveAck {};

// --- one-way ----------------------------------------------------------------------------

// "I think I am your predecessor" — the input of rectify (Zave's replacement for notify).
struct Notify {};

using Message = std::variant<Ping, Pong, GetNeighbors, Neighbors, FindNext, FindNextReply, Notify,
                             Leave, LeaveAck>;

struct Envelope {
    Peer from;
    std::string to_address;
    std::optional<NodeId> to_id;  // nullopt: any vnode at to_address (join's bootstrap)
    RpcId rpc_id = 0;             // 0 for one-way messages
    bool reply = false;
    Message body;
};

const char* message_name(const Message& m);

}  // namespace chordkv::chord
