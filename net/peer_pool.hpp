// PeerPool: the asynchronous, pipelined request/reply client over TCP to many peers — the
// data path's way out (replication, handoff, forwarded client operations). The blocking,
// one-request-at-a-time client for tools is net/request_client.hpp.
//
//   call(address, make, done) ─► Peer (one per address, created lazily)
//                                  resolving ─► connecting ─► connected ──► (closed)
//                                  │ frames queue while connecting; written in order after
//                                  │ many requests in flight, each under its own request id
//                                  │ writes are gathered: a call's frame goes out from a
//                                  │ handler posted to the io_context, with every frame
//                                  │ queued on that connection before it runs (one send())
//                                  └ reply ─► first 8 payload bytes ─► pending[id] ─► done
//
// Wire contract (what this pool relies on to match replies). Every request and every reply
// on a PeerPool connection is one frame (net/codec.hpp) whose payload begins with the request
// id: a `std::uint64_t request_id` that is the FIRST archived field of the message struct, so
// the payload's first 8 bytes are the id, little-endian (net/serialization.hpp writes integers
// that way). The server copies the request's id into its reply — any reply type, including an
// ErrorReply (net/admin.hpp). The pool hands `make` a fresh id (unique within the pool) and
// matches a reply by those 8 bytes alone; the frame type is passed through to the caller
// unchecked. Replies may come in any order. A reply whose id is not pending (it timed out, or
// the peer made it up) is counted and ignored.
//
// Completion: every accepted call completes exactly once, with
//   - the reply frame;
//   - timed_out: no reply before the call's deadline (a later reply is ignored);
//   - unreachable: the address could not be resolved, the connection could not be made (refused,
//     no route, connect_timeout passed) or it was lost (reset, closed by the peer, write error).
//     Every request pending on that connection fails with it; the next call reconnects;
//   - malformed_message / too_large / unauthenticated: the peer sent a frame that does not
//     decode, is over tcp_payload_bytes_max, or fails the MAC policy (net/codec.hpp), or a
//     payload shorter than a request id. The connection is dropped; every pending request on it
//     fails with that error;
//   - busy: the address already has inflight_per_peer_max requests pending (or that many frames
//     waiting to be written), or peers_max connections are open and none of them is idle;
//   - invalid_argument: the address is not HOST:PORT (net/address.hpp);
//   - shutting_down: close() was called (before or during the call).
// Errors known when call() is made (busy, invalid_argument, shutting_down) are delivered
// through the io_context (posted), never from inside call(). Failures of a connection are
// delivered from the handler that saw them; close() completes its pending calls inline.
//
// Deadlines: each connection has one steady_timer armed to its earliest deadline (request
// deadlines and, until connected, the connect deadline); replies do not re-arm it, so it may
// wake early, find nothing due and re-arm.
//
// Threading: not thread-safe. Construct, call every method and destroy the pool on the thread
// that runs the io_context (or a strand of it); every handler runs there. The pool must be
// destroyed before the io_context. Destroying the pool (or close()) is safe while operations
// are still queued in the io_context, also a stopped one: the queued handlers hold their
// connection alive and do nothing once it is closed. Handlers must not throw.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "chord/result.hpp"
#include "net/codec.hpp"
#include "net/request_client.hpp"

namespace chordkv::net {

// Bytes at the start of every request and reply payload that hold its request id.
inline constexpr std::size_t kRequestIdBytes = 8;

// The request id at the start of `payload` (little-endian, as the archives write it), or 0
// when the payload is shorter. A node answering a request it cannot decode echoes it, so the
// caller's call fails at once instead of at its deadline.
inline std::uint64_t request_id_of(std::string_view payload) noexcept {
    if (payload.size() < kRequestIdBytes) return 0;
    std::uint64_t id = 0;
    for (std::size_t i = 0; i < kRequestIdBytes; ++i) {
        id |= std::uint64_t{static_cast<unsigned char>(payload[i])} << (8 * i);
    }
    return id;
}

struct PeerPoolOptions {
    // Cluster key for the frame MAC (net/codec.hpp); empty = frames carry no tag. Must match
    // the peers' key: a keyed peer drops a keyless client and the reverse.
    std::string cluster_key;
    // Time to resolve and connect before the pending calls fail with unreachable. Default 2 s.
    std::chrono::milliseconds connect_timeout{2000};
    // Deadline of a call that does not give its own. Default 5 s.
    std::chrono::milliseconds request_timeout{5000};
    // Calls pending on one connection (and frames waiting to be written to it); one more fails
    // at once with busy, so a slow peer cannot grow our memory without bound. Default 4096.
    std::size_t inflight_per_peer_max = 4096;
    // Connections open or opening. At the limit a new address closes the least recently used
    // idle connection (no call pending); when none is idle the call fails with busy. Default 1024.
    std::size_t peers_max = 1024;
    // Largest reply payload accepted; a larger frame drops the connection (too_large).
    std::size_t tcp_payload_bytes_max = kTcpPayloadBytesMax;
};

struct PeerPoolStats {
    std::uint64_t connects = 0;             // connections established
    std::uint64_t connect_failures = 0;     // resolve or connect failed, or connect_timeout
    std::uint64_t requests = 0;             // calls accepted (queued or written)
    std::uint64_t replies = 0;              // replies matched to a pending call
    std::uint64_t replies_unmatched = 0;    // replies with no pending call (late, unknown id)
    std::uint64_t timeouts = 0;             // calls failed with timed_out
    std::uint64_t busy = 0;                 // calls refused with busy
    std::uint64_t dropped_connections = 0;  // established connections lost or dropped by us
};

class PeerPool {
public:
    // Encodes the caller's request as one complete frame whose payload starts with
    // `request_id` (see the wire contract above), tagged with the pool's cluster key (nullptr
    // when it has none). Called once, inside call(); if it throws, the exception leaves call()
    // and nothing is sent or completed.
    using MakeFrame = std::function<std::string(std::uint64_t request_id)>;
    // Receives the reply frame (its payload starts with the request id) or the error.
    using ReplyHandler = std::function<void(Result<Frame>)>;

    PeerPool(boost::asio::io_context& io, PeerPoolOptions options);
    // close().
    ~PeerPool();
    PeerPool(const PeerPool&) = delete;
    PeerPool& operator=(const PeerPool&) = delete;

    // Sends the frame `make(id)` to `address` ("host:port"; a name is resolved asynchronously)
    // over the connection to it — opened when there is none — and calls `done` exactly once
    // with the outcome (see "Completion" above). `timeout` defaults to options.request_timeout
    // and counts from now, including the time to connect. Connections are keyed by `address`
    // as given.
    void call(const std::string& address, const MakeFrame& make, ReplyHandler done,
              std::optional<std::chrono::milliseconds> timeout = {});

    // Fails every pending call with shutting_down (inline, in request-id order per connection)
    // and closes every connection; later calls fail with shutting_down. Idempotent.
    void close();

    // The key frames must be tagged with (nullptr = none); valid as long as the pool.
    const std::string* key() const noexcept {
        return options_.cluster_key.empty() ? nullptr : &options_.cluster_key;
    }
    const PeerPoolOptions& options() const noexcept { return options_; }
    const PeerPoolStats& stats() const noexcept { return stats_; }
    // Connections open or opening.
    std::size_t peers() const noexcept { return peers_.size(); }
    // Calls pending on the connection to `address` (0 when there is none).
    std::size_t inflight(const std::string& address) const;

private:
    class Peer;

    using PeerMap = std::unordered_map<std::string, std::shared_ptr<Peer>>;

    // The connection to `address`, opened when missing. Errors: invalid_argument, busy
    // (peers_max reached and no idle connection to close).
    Result<Peer*> peer_for(const std::string& address);
    // Called by a Peer that closed itself (failure): forgets it if it is still the one mapped.
    void forget(const Peer& peer);
    // Delivers `error` to `done` through the io_context.
    void post_failure(ReplyHandler done, Error error);

    boost::asio::io_context& io_;
    PeerPoolOptions options_;
    PeerMap peers_;
    PeerPoolStats stats_;
    std::uint64_t next_request_id_ = 1;
    bool closed_ = false;
};

}  // namespace chordkv::net
