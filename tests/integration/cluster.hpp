// A cluster of real chordd processes on 127.0.0.1 for integration tests: each with its own
// port and temp data dir; started, killed (-9 or SIGTERM) and restarted by PID.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chord/node_id.hpp"
#include "chord/result.hpp"
#include "net/admin.hpp"
#include "process.hpp"

namespace chordkv::testing {

struct ClusterOptions {
    int vnodes = 8;
    int successors = 8;
    std::vector<std::string> extra_flags;
    // Cluster key file given to every process (and used by this harness's own requests).
    std::string key_file;
};

class Cluster {
public:
    explicit Cluster(ClusterOptions options);
    ~Cluster();  // kills what is still running, removes the temp dirs

    // Starts process i (a new index when i == size()). join_via: index of a running process
    // to join through, or -1 for a new ring. Returns false (with the log) when it does not
    // report ready within `timeout`.
    bool start(std::size_t i, int join_via,
               std::chrono::milliseconds timeout = std::chrono::seconds(20));
    void kill9(std::size_t i);
    // SIGSTOP: the process keeps its sockets (peers can connect, and their bytes wait) but
    // answers nothing. kill9() still ends it.
    void pause(std::size_t i);
    // SIGTERM; waits for the exit; returns the exit status.
    std::optional<int> terminate(std::size_t i, std::chrono::milliseconds timeout);
    bool running(std::size_t i);

    std::size_t size() const noexcept { return procs_.size(); }
    std::string address(std::size_t i) const;
    const std::string& log_path(std::size_t i) const { return procs_[i].log; }
    const std::string& data_dir(std::size_t i) const { return procs_[i].dir; }
    std::string log(std::size_t i) const;

    // The vnodes of process i, over the wire; with `keys`, their key counts too.
    Result<net::InfoReply> info(std::size_t i, bool keys = false) const;
    // "" when the running processes form the ideal ring (one ordered ring of all their vnodes,
    // successor lists = the next min(r, M-1), predecessors right); else the first problem.
    std::string ideal_ring_problem() const;
    // Every vnode's predecessor and successor list, one line each, in ring order.
    std::string dump() const;
    // The sorted ids of every vnode of every running process (as they report them).
    std::vector<chord::NodeId> live_ids() const;

private:
    struct Proc {
        int port = 0;
        std::string dir;
        std::string log;
        std::unique_ptr<ChildProcess> child;
    };
    ClusterOptions options_;
    std::string key_;
    std::string root_;
    std::vector<Proc> procs_;
};

std::string chordd_path();
std::string chordctl_path();

// The InfoReply of the process at `address` ("host:port"), over the wire; with `keys`, the
// vnodes' key counts too. Errors: those of net::RequestClient (unreachable, timed_out, ...)
// and malformed_message for an unexpected reply.
Result<net::InfoReply> info_of(const std::string& address, const std::string& cluster_key = {},
                               bool keys = false,
                               std::chrono::milliseconds timeout = std::chrono::seconds(2));

// Cluster::ideal_ring_problem() for processes that this harness did not start (for instance
// the hosts of tools/chord-cluster): "" when the processes at `addresses` form the ideal ring
// (one ordered ring of all their vnodes, successor lists = the next min(successors, M-1),
// predecessors right); else the first problem, an address that does not answer included.
std::string ideal_ring_problem(const std::vector<std::string>& addresses, std::size_t successors,
                               const std::string& cluster_key = {});

}  // namespace chordkv::testing
