// chordkv::Client: talk to a chordkv cluster from C++.
//
//     chordkv::ClientOptions options;
//     options.seeds = {"10.0.0.1:7400"};
//     chordkv::Client client(options);
//     auto version = client.put("user:42", "value");          // Result<std::uint64_t>
//     auto value = client.get("user:42");                     // Result<std::optional<std::string>>
//     client.del("user:42");
//
// Each operation goes to a seed (or to the owner learned last time); a node that does not own
// the key answers with the owner it believes in, and the client follows (bounded). The owner
// coordinates replication: put returns once `write_acks` copies hold the value.
//
// Threading: one thread at a time per Client (it keeps blocking connections); use one Client
// per thread. Every call is bounded by `timeout` per request.
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

namespace chordkv {

struct ClientOptions {
    // Nodes to send requests to first (any cluster node will do), tried in order.
    std::vector<std::string> seeds = {"127.0.0.1:7400"};
    // Bound on each request (connect, send, answer).
    std::chrono::milliseconds timeout = std::chrono::seconds(5);
    // The cluster's key, when it has one (frames are authenticated with it).
    std::string cluster_key;
    // Redirects followed per operation before giving up with `unreachable`.
    int redirects_max = 4;
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

private:
    template <typename Reply, typename Request>
    Result<Reply> ask_owner(Request request);
    Result<net::RequestClient*> connection(const std::string& address);

    ClientOptions options_;
    std::map<std::string, std::unique_ptr<net::RequestClient>> connections_;
    std::uint64_t next_request_id_ = 1;
};

}  // namespace chordkv
