#include "cluster.hpp"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>

#include "chord/protocol.hpp"
#include "net/admin_codec.hpp"
#include "net/cluster_key.hpp"
#include "net/request_client.hpp"

namespace chordkv::testing {
namespace {
constexpr auto kMember = static_cast<std::uint8_t>(chord::MemberState::member);
}  // namespace

std::string chordd_path() {
    return CHORDKV_CHORDD_PATH;
}
std::string chordctl_path() {
    return CHORDKV_CHORDCTL_PATH;
}

Cluster::Cluster(ClusterOptions options) : options_(std::move(options)) {
    if (!options_.key_file.empty()) {
        auto key = net::read_cluster_key_file(options_.key_file);
        if (key) key_ = *key;
        options_.extra_flags.push_back("--cluster-key-file");
        options_.extra_flags.push_back(options_.key_file);
    }
    root_ =
        (std::filesystem::temp_directory_path() / ("chordkv-it-" + std::to_string(::getpid()) +
                                                   "-" + std::to_string(std::random_device{}())))
            .string();
    std::filesystem::create_directories(root_);
}

Cluster::~Cluster() {
    procs_.clear();  // ChildProcess destructors SIGKILL and reap
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
}

std::string Cluster::address(std::size_t i) const {
    return "127.0.0.1:" + std::to_string(procs_[i].port);
}

std::string Cluster::log(std::size_t i) const {
    return procs_[i].child ? procs_[i].child->log() : std::string();
}

bool Cluster::start(std::size_t i, int join_via, std::chrono::milliseconds timeout) {
    if (i == procs_.size()) {
        Proc p;
        p.port = free_port();
        p.dir = root_ + "/node" + std::to_string(i);
        p.log = root_ + "/node" + std::to_string(i) + ".log";
        procs_.push_back(std::move(p));
    }
    Proc& p = procs_[i];
    std::vector<std::string> argv = {chordd_path(),
                                     "--listen",
                                     address(i),
                                     "--data-dir",
                                     p.dir,
                                     "--vnodes",
                                     std::to_string(options_.vnodes),
                                     "--successors",
                                     std::to_string(options_.successors),
                                     "--log-level",
                                     "info"};
    if (join_via >= 0) {
        argv.push_back("--join");
        argv.push_back(address(static_cast<std::size_t>(join_via)));
    }
    argv.insert(argv.end(), options_.extra_flags.begin(), options_.extra_flags.end());
    p.child = std::make_unique<ChildProcess>(argv, p.log);
    // Ready = every vnode reports being a member.
    return wait_for(
        [&] {
            auto r = info(i);
            if (!r) return false;
            return std::all_of(r->vnodes.begin(), r->vnodes.end(),
                               [](const net::VnodeInfo& v) { return v.state == kMember; });
        },
        timeout);
}

void Cluster::kill9(std::size_t i) {
    if (procs_[i].child) {
        procs_[i].child->signal(SIGKILL);
        procs_[i].child->wait(std::chrono::seconds(10));
    }
}

void Cluster::pause(std::size_t i) {
    if (procs_[i].child) procs_[i].child->signal(SIGSTOP);
}

std::optional<int> Cluster::terminate(std::size_t i, std::chrono::milliseconds timeout) {
    if (!procs_[i].child) return std::nullopt;
    procs_[i].child->signal(SIGTERM);
    return procs_[i].child->wait(timeout);
}

bool Cluster::running(std::size_t i) {
    return procs_[i].child && procs_[i].child->running();
}

Result<net::InfoReply> Cluster::info(std::size_t i, bool keys) const {
    return info_of(address(i), key_, keys);
}

std::vector<chord::NodeId> Cluster::live_ids() const {
    std::vector<chord::NodeId> ids;
    for (std::size_t i = 0; i < procs_.size(); ++i) {
        if (!procs_[i].child || !const_cast<Cluster*>(this)->running(i)) continue;
        if (auto r = info(i)) {
            for (const auto& v : r->vnodes) ids.push_back(v.id);
        }
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::string Cluster::ideal_ring_problem() const {
    std::vector<std::string> addresses;
    for (std::size_t i = 0; i < procs_.size(); ++i) {
        if (procs_[i].child && const_cast<Cluster*>(this)->running(i)) {
            addresses.push_back(address(i));
        }
    }
    return testing::ideal_ring_problem(addresses, static_cast<std::size_t>(options_.successors),
                                       key_);
}

}  // namespace chordkv::testing

namespace chordkv::testing {

std::string Cluster::dump() const {
    std::map<chord::NodeId, std::pair<std::string, net::VnodeInfo>> vnodes;
    for (std::size_t i = 0; i < procs_.size(); ++i) {
        if (!procs_[i].child || !const_cast<Cluster*>(this)->running(i)) continue;
        auto r = info(i);
        if (!r) continue;
        for (const auto& v : r->vnodes) vnodes[v.id] = {address(i), v};
    }
    std::string out;
    for (const auto& [id, entry] : vnodes) {
        const auto& v = entry.second;
        out += id.short_hex() + " @" + entry.first + " state " + std::to_string(v.state) +
               " pred " + (v.predecessor ? v.predecessor->id.short_hex() : std::string("-")) +
               " succ";
        for (const auto& p : v.successors) out += " " + p.id.short_hex();
        out += "\n";
    }
    return out;
}

}  // namespace chordkv::testing

namespace chordkv::testing {

Result<net::InfoReply> info_of(const std::string& address, const std::string& cluster_key,
                               bool keys, std::chrono::milliseconds timeout) {
    using R = Result<net::InfoReply>;
    auto client = net::RequestClient::connect(address, timeout, cluster_key);
    if (!client) return R(client.error());
    auto frame =
        (*client)->call(net::encode_admin(net::InfoRequest{7, keys}, (*client)->key()), timeout);
    if (!frame) return R(frame.error());
    if (frame->type != net::admin_type<net::InfoReply>()) {
        return R(Errc::malformed_message, "unexpected reply type");
    }
    return net::decode_admin<net::InfoReply>(frame->payload);
}

std::string ideal_ring_problem(const std::vector<std::string>& addresses, std::size_t successors,
                               const std::string& cluster_key) {
    std::map<chord::NodeId, net::VnodeInfo> vnodes;
    for (const auto& address : addresses) {
        auto r = info_of(address, cluster_key);
        if (!r) return address + ": " + r.error().message();
        for (const auto& v : r->vnodes) vnodes[v.id] = v;
    }
    if (vnodes.empty()) return "no running process";
    std::vector<chord::NodeId> ids;
    for (const auto& [id, v] : vnodes) ids.push_back(id);
    const std::size_t m = ids.size();
    const std::size_t r = std::min<std::size_t>(successors, m > 1 ? m - 1 : 1);
    for (std::size_t k = 0; k < m; ++k) {
        const auto& v = vnodes[ids[k]];
        if (v.state != kMember) return ids[k].short_hex() + " is not a member";
        if (m == 1) continue;
        const auto& pred = ids[(k + m - 1) % m];
        if (!v.predecessor || v.predecessor->id != pred) {
            return ids[k].short_hex() + ": predecessor " +
                   (v.predecessor ? v.predecessor->id.short_hex() : std::string("none")) +
                   ", expected " + pred.short_hex();
        }
        if (v.successors.size() != r) {
            return ids[k].short_hex() + ": " + std::to_string(v.successors.size()) +
                   " successors, expected " + std::to_string(r);
        }
        for (std::size_t j = 0; j < r; ++j) {
            const auto& expected = ids[(k + 1 + j) % m];
            if (v.successors[j].id != expected) {
                return ids[k].short_hex() + ": successor " + std::to_string(j) + " is " +
                       v.successors[j].id.short_hex() + ", expected " + expected.short_hex();
            }
        }
    }
    return "";
}

}  // namespace chordkv::testing
