// chordkv::Client: talk to a chordkv cluster from C++.
//
//     chordkv::ClientOptions options;
//     options.seeds = {"10.0.0.1:7400"};
//     chordkv::Client client(options);
//     auto version = client.put("user:42", "value");          // Result<std::uint64_t>
//     auto value = client.get("user:42");                     // Result<GetResult>
//     client.del("user:42");
//
// A smart client: on first use it walks the ring once (InfoRequest to a seed, then to the
// processes its vnodes' successor lists name; node/ring_view.hpp) and from then on sends each
// operation straight to the process that owns the key — one network hop. A node that does not
// own the key answers with the owner it believes in; the client follows (bounded) and learns
// it, and when the process its view named as the owner redirects, the view is stale and the
// ring is walked again before a later operation (at most once per rewalk_interval_min). With
// an empty view, or when the owner does not answer, the operation goes to the seeds in order.
// The owner coordinates replication: put returns once `write_acks` copies hold the value.
//
// Threading: one thread at a time per Client (it keeps blocking connections); use one Client
// per thread. Every call is bounded by `timeout` per request (a ring walk, when one is due,
// by ring_view.walk_timeout more).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chord/result.hpp"
#include "net/request_client.hpp"
#include "node/ring_view.hpp"

namespace chordkv {

struct ClientOptions {
    // Nodes to walk the ring from, and to send an operation to when the ring view names no
    // owner (any cluster node will do), tried in order.
    std::vector<std::string> seeds = {"127.0.0.1:7400"};
    // Bound on each request (connect, send, answer).
    std::chrono::milliseconds timeout = std::chrono::seconds(5);
    // The cluster's key, when it has one (frames are authenticated with it).
    std::string cluster_key;
    // Redirects followed per operation before giving up with `unreachable`.
    int redirects_max = 4;
    // Send each operation straight to its key's owner, from a view of the ring. false: every
    // operation goes to the seeds first and follows the redirect (two hops for most keys), as
    // a client that cannot walk the ring would. Default true.
    bool smart_routing = true;
    // Bounds of the ring view and its walks (node/ring_view.hpp).
    RingViewOptions ring_view;
    // While waiting for a reply, poll for up to this long before sleeping in the kernel: the
    // client's wake-up leaves the round trip (tens of microseconds on a VM) for a core kept
    // busy meanwhile. 0 (the default): never poll.
    std::chrono::microseconds busy_poll{0};
};

// What a Client did, for tests and tools.
struct ClientStats {
    std::uint64_t requests = 0;            // get/put/del frames sent (each redirect hop counts)
    std::uint64_t redirects_followed = 0;  // Redirect answers followed
    std::uint64_t seed_fallbacks = 0;      // hops sent to a seed: empty view, owner unreachable
    std::uint64_t ring_walks = 0;          // walks of the ring started
    std::size_t view_vnodes = 0;           // vnodes in the ring view now
    std::size_t view_processes = 0;        // distinct processes in the ring view now
};

struct GetResult {
    bool found = false;  // false: never written, or deleted
    std::uint64_t version = 0;
    std::string value;
};

class Client {
public:
    explicit Client(ClientOptions options);

    // Stores `value` under `key`; returns the version the owner stamped. Errors: too_large and
    // invalid_argument for bad sizes; unreachable when too few copies or no node answered;
    // timed_out.
    Result<std::uint64_t> put(std::string_view key, std::string_view value);
    // Deletes `key` (a replicated tombstone); returns its version. Same errors as put.
    Result<std::uint64_t> del(std::string_view key);
    // Reads `key`: the owner's copy, or with `quorum` the newest of every replica (stale copies
    // are repaired). Errors as put.
    Result<GetResult> get(std::string_view key, bool quorum = false);

    // The address an operation on `key` is sent to first: its owner in the ring view (walking
    // the ring first when a walk is due), or the first seed when the view is empty or
    // smart_routing is off.
    std::string route(std::string_view key);

    ClientStats stats() const;
    std::uint64_t redirects_followed() const noexcept { return stats_.redirects_followed; }
    const RingView& ring_view() const noexcept { return view_; }

private:
    template <typename Reply, typename Request>
    Result<Reply> ask_owner(Request request);
    // Sends `request` to `address` (a fresh request id) and returns the answer frame. A failed
    // exchange drops the connection (its stream is in an unknown state).
    template <typename Request>
    Result<net::Frame> exchange(const std::string& address, Request& request);
    Result<net::RequestClient*> connection(const std::string& address);
    // Walks the ring when the view asks for it (empty or stale, rate-limited).
    void refresh_view();

    ClientOptions options_;
    std::map<std::string, std::unique_ptr<net::RequestClient>> connections_;
    std::uint64_t next_request_id_ = 1;
    RingView view_;
    ClientStats stats_;
};

}  // namespace chordkv
