// HostCluster: tools/chord-cluster driven from C++ for the chaos test — N chordd hosts, each
// in its own network namespace on a private bridge (as root), started, killed, restarted,
// added, made to leave, cut off and partitioned by running the script.
//
// It keeps the state of every host it made (running, killed, left) so the caller knows which
// processes should form the ring. Every command is bounded by a timeout; a command that fails
// is an Error with the script's exit code and output. stop() (and the destructor) runs
// `chord-cluster stop`, which ends exactly the processes and removes exactly the links and
// namespaces the script made for this state dir.
//
// Threading: one thread at a time.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "chord/result.hpp"

namespace chordkv::chaos {

struct HostClusterOptions {
    // The chord-cluster script.
    std::string script;
    // Its --state dir: data dirs, logs and the names of what it made. Must be ours alone.
    std::string state_dir;
    // Environment for the script (empty: its own default): the chordd binary, the netns
    // subnet (hosts are SUBNET.10+I), the port, the vnodes per host.
    std::string chordd;
    std::string subnet;
    int port = 0;
    int vnodes = 0;
    // Flags given to every chordd (`start N -- FLAGS`).
    std::vector<std::string> chordd_flags;
    // Bound on one script command (a graceful leave is given `leave_timeout`).
    std::chrono::milliseconds command_timeout = std::chrono::seconds(60);
    std::chrono::milliseconds leave_timeout = std::chrono::seconds(60);
};

enum class HostState { running, killed, left };

class HostCluster {
public:
    explicit HostCluster(HostClusterOptions options);
    ~HostCluster();  // stop()
    HostCluster(const HostCluster&) = delete;
    HostCluster& operator=(const HostCluster&) = delete;

    // Starts `n` hosts as one ring (each waits until it logs ready). A cluster left in the
    // state dir by an earlier run that was killed is stopped first.
    Status start(int n);
    // A new host joining through the running ones; returns its index.
    Result<int> add();
    Status kill(int i);     // kill -9
    Status restart(int i);  // a killed host, on its data dir; waits until it is ready
    Status leave(int i);    // SIGTERM: graceful leave with handoff; waits for the exit
    Status cut(int i);
    Status restore(int i);
    // Traffic between the two groups is dropped, both ways.
    Status partition(const std::vector<int>& a, const std::vector<int>& b);
    Status heal();
    // Stops every process and removes what the script made (the state dir included).
    // Idempotent.
    void stop();

    // Root: network namespaces; otherwise hosts share loopback and cut/partition fail.
    bool netns() const noexcept { return netns_; }
    int size() const noexcept { return static_cast<int>(hosts_.size()); }
    const std::string& address(int i) const { return hosts_[static_cast<std::size_t>(i)].address; }
    HostState state(int i) const { return hosts_[static_cast<std::size_t>(i)].state; }
    std::vector<int> running() const;
    std::vector<int> killed() const;
    std::vector<std::string> running_addresses() const;
    const std::string& state_dir() const noexcept { return options_.state_dir; }

private:
    struct Host {
        std::string address;
        HostState state = HostState::running;
    };
    // Runs `chord-cluster --state DIR args...`; its stdout, or an Error naming the command.
    Result<std::string> run(const std::vector<std::string>& args,
                            std::chrono::milliseconds timeout);
    Result<std::string> address_of(int i);

    HostClusterOptions options_;
    std::vector<Host> hosts_;
    bool netns_ = false;
    bool started_ = false;
};

}  // namespace chordkv::chaos
