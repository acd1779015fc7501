#include "host_cluster.hpp"

#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "process.hpp"

namespace chordkv::chaos {

namespace {

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

std::string joined(const std::vector<int>& hosts) {
    std::string out;
    for (int i : hosts) {
        if (!out.empty()) out += ',';
        out += std::to_string(i);
    }
    return out;
}

}  // namespace

HostCluster::HostCluster(HostClusterOptions options) : options_(std::move(options)) {
    netns_ = ::geteuid() == 0;
}

HostCluster::~HostCluster() {
    stop();
}

Result<std::string> HostCluster::run(const std::vector<std::string>& args,
                                     std::chrono::milliseconds timeout) {
    // The environment goes through env(1): nothing of this process's own is changed.
    std::vector<std::string> argv = {"/usr/bin/env"};
    if (!options_.chordd.empty()) argv.push_back("CHORDD=" + options_.chordd);
    if (!options_.subnet.empty()) argv.push_back("SUBNET=" + options_.subnet);
    if (options_.port > 0) argv.push_back("PORT=" + std::to_string(options_.port));
    if (options_.vnodes > 0) argv.push_back("VNODES=" + std::to_string(options_.vnodes));
    argv.insert(argv.end(), {options_.script, "--state", options_.state_dir});
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = testing::run_command(argv, timeout);
    if (result.exit_code == 0) return std::move(result.out);
    std::string command = "chord-cluster";
    for (const auto& a : args) command += " " + a;
    const std::string why = result.exit_code < 0
                                ? "timed out after " + std::to_string(timeout.count()) + " ms"
                                : "exit " + std::to_string(result.exit_code);
    return Result<std::string>(
        result.exit_code < 0 ? Errc::timed_out : Errc::unreachable,
        command + ": " + why + (result.out.empty() ? "" : ": " + trimmed(result.out)));
}

Result<std::string> HostCluster::address_of(int i) {
    auto out = run({"addr", std::to_string(i)}, options_.command_timeout);
    if (!out) return out;
    return trimmed(*out);
}

Status HostCluster::start(int n) {
    if (std::filesystem::exists(options_.state_dir + "/count")) {
        // A cluster an earlier run left behind (it was killed before it could stop it).
        (void)run({"stop"}, options_.command_timeout);
    }
    std::vector<std::string> args = {"start", std::to_string(n), "--"};
    args.insert(args.end(), options_.chordd_flags.begin(), options_.chordd_flags.end());
    started_ = true;  // from here on stop() has something to undo, even after a failure
    auto out = run(args, options_.command_timeout + std::chrono::seconds(30) * n);
    if (!out) return out.error();
    hosts_.clear();
    for (int i = 0; i < n; ++i) {
        auto address = address_of(i);
        if (!address) return address.error();
        hosts_.push_back({*address, HostState::running});
    }
    return {};
}

Result<int> HostCluster::add() {
    auto out = run({"add"}, options_.command_timeout);
    const int i = static_cast<int>(hosts_.size());
    if (!out) {
        // The host may have been made and started without becoming ready: it is ours to stop,
        // and the ring may see it. Record it (as killed: it is not counted on) after a kill.
        (void)run({"kill", std::to_string(i)}, options_.command_timeout);
        auto address = address_of(i);
        if (address) hosts_.push_back({*address, HostState::killed});
        return Result<int>(out.error());
    }
    std::istringstream in(*out);
    int index = -1;
    std::string address;
    in >> index >> address;
    if (index != i || address.empty()) {
        return Result<int>(Errc::malformed_message, "chord-cluster add printed '" + *out + "'");
    }
    hosts_.push_back({address, HostState::running});
    return index;
}

Status HostCluster::kill(int i) {
    auto out = run({"kill", std::to_string(i)}, options_.command_timeout);
    if (!out) return out.error();
    hosts_[static_cast<std::size_t>(i)].state = HostState::killed;
    return {};
}

Status HostCluster::restart(int i) {
    auto out = run({"restart", std::to_string(i)}, options_.command_timeout);
    if (!out) {
        // Not ready in time, or it exited: make sure it is not running half-started.
        (void)run({"kill", std::to_string(i)}, options_.command_timeout);
        return out.error();
    }
    hosts_[static_cast<std::size_t>(i)].state = HostState::running;
    return {};
}

Status HostCluster::leave(int i) {
    auto out = run({"leave", std::to_string(i)}, options_.leave_timeout);
    if (!out) {
        // Still leaving after the bound: kill it; its data dir stays for a restart.
        (void)run({"kill", std::to_string(i)}, options_.command_timeout);
        hosts_[static_cast<std::size_t>(i)].state = HostState::killed;
        return out.error();
    }
    hosts_[static_cast<std::size_t>(i)].state = HostState::left;
    return {};
}

Status HostCluster::cut(int i) {
    auto out = run({"cut", std::to_string(i)}, options_.command_timeout);
    if (!out) return out.error();
    return {};
}

Status HostCluster::restore(int i) {
    auto out = run({"restore", std::to_string(i)}, options_.command_timeout);
    if (!out) return out.error();
    return {};
}

Status HostCluster::partition(const std::vector<int>& a, const std::vector<int>& b) {
    auto out = run({"partition", joined(a), joined(b)}, options_.command_timeout);
    if (!out) return out.error();
    return {};
}

Status HostCluster::heal() {
    auto out = run({"heal"}, options_.command_timeout);
    if (!out) return out.error();
    return {};
}

void HostCluster::stop() {
    if (!started_) return;
    started_ = false;
    (void)run({"stop"}, options_.command_timeout);
}

std::vector<int> HostCluster::running() const {
    std::vector<int> out;
    for (int i = 0; i < size(); ++i) {
        if (state(i) == HostState::running) out.push_back(i);
    }
    return out;
}

std::vector<int> HostCluster::killed() const {
    std::vector<int> out;
    for (int i = 0; i < size(); ++i) {
        if (state(i) == HostState::killed) out.push_back(i);
    }
    return out;
}

std::vector<std::string> HostCluster::running_addresses() const {
    std::vector<std::string> out;
    for (int i : running()) out.push_back(address(i));
    return out;
}

}  // namespace chordkv::chaos
