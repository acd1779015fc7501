// A keyed ring of real chordd processes keeps out processes and clients without its key (or
// with another key), and rejects replayed frames (net/cluster_key.hpp, net/codec.hpp).
#include "net/cluster_key.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chord/messages.hpp"
#include "cluster.hpp"
#include "net/codec.hpp"

namespace chordkv::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kVnodes = 4;
constexpr std::size_t kMembers = 3;
constexpr int kExitJoin = 5;   // chordd: no seed answered before the join timeout
constexpr int kExitError = 2;  // chordctl: any error

struct Outcome {
    int exit_code = -1;
    std::string output;  // stdout and stderr
};

class ClusterKeyTest : public ::testing::Test {
protected:
    void SetUp() override {
        key_file_ = dir_.file("key");
        other_key_file_ = dir_.file("other");
        std::ofstream(key_file_) << "0123456789abcdef0123456789abcdef\n";
        std::ofstream(other_key_file_) << "fedcba9876543210fedcba9876543210\n";
        auto key = net::read_cluster_key_file(key_file_);
        ASSERT_TRUE(key) << key.error().message();
        key_ = *key;

        ClusterOptions options;
        options.vnodes = kVnodes;
        options.key_file = key_file_;
        cluster_ = std::make_unique<Cluster>(options);
        ASSERT_TRUE(cluster_->start(0, -1)) << cluster_->log(0);
        for (std::size_t i = 1; i < kMembers; ++i) {
            ASSERT_TRUE(cluster_->start(i, static_cast<int>(i - 1))) << cluster_->log(i);
        }
        ASSERT_TRUE(ideal(15s)) << problem_ << "\n" << cluster_->dump();
        for (std::size_t i = 0; i < kMembers; ++i) members_.insert(cluster_->address(i));
    }

    void TearDown() override { cluster_.reset(); }

    bool ideal(std::chrono::milliseconds timeout) {
        return wait_for([&] { return (problem_ = cluster_->ideal_ring_problem()).empty(); },
                        timeout, 200ms);
    }

    // Runs a command to its end (at most `timeout`), with stdout and stderr captured.
    Outcome run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 20s) {
        ChildProcess child(argv, dir_.file("cmd-" + std::to_string(commands_++) + ".log"));
        const auto code = child.wait(timeout);
        return Outcome{code.value_or(-1), child.log()};
    }

    // chordctl against member `i`; `key_file` empty: no --cluster-key-file.
    Outcome chordctl(std::size_t i, const std::string& key_file,
                     const std::vector<std::string>& command) {
        std::vector<std::string> argv = {chordctl_path(), "--node", cluster_->address(i),
                                         "--timeout", "3000"};
        if (!key_file.empty()) {
            argv.push_back("--cluster-key-file");
            argv.push_back(key_file);
        }
        argv.insert(argv.end(), command.begin(), command.end());
        return run(argv);
    }

    // Stores and reads back one key with the right key file; "" on success.
    std::string keyed_put_get(std::size_t via, const std::string& key, const std::string& value) {
        const Outcome put = chordctl(via, key_file_, {"put", key, value});
        if (put.exit_code != 0) return "put " + key + ": " + put.output;
        const Outcome get = chordctl((via + 1) % kMembers, key_file_, {"get", key});
        if (get.exit_code != 0 || get.output != value) {
            return "get " + key + " (exit " + std::to_string(get.exit_code) + "): " + get.output;
        }
        return "";
    }

    // "" when every vnode of every member names only members as predecessor and successors;
    // else the first stranger (or the error reading a member).
    std::string stranger_in_lists() const {
        for (std::size_t i = 0; i < kMembers; ++i) {
            auto info = cluster_->info(i);
            if (!info) return cluster_->address(i) + ": " + info.error().message();
            for (const auto& v : info->vnodes) {
                if (v.predecessor && members_.count(v.predecessor->address) == 0) {
                    return v.id.short_hex() + " has predecessor " + v.predecessor->address;
                }
                for (const auto& s : v.successors) {
                    if (members_.count(s.address) == 0) {
                        return v.id.short_hex() + " has successor " + s.address;
                    }
                }
            }
        }
        return "";
    }

    std::vector<std::uint64_t> unauthenticated_counts() const {
        std::vector<std::uint64_t> out;
        for (std::size_t i = 0; i < kMembers; ++i) {
            auto info = cluster_->info(i);
            out.push_back(info ? info->frames_unauthenticated : 0);
        }
        return out;
    }

    TempDir dir_{"key-it"};
    std::string key_file_, other_key_file_, key_;
    std::unique_ptr<Cluster> cluster_;
    std::set<std::string> members_;
    std::string problem_;
    int commands_ = 0;
};

TEST_F(ClusterKeyTest, OutsidersCannotJoinOrTalkToAKeyedRing) {
    ASSERT_EQ(keyed_put_get(0, "before", "v0"), "");
    const std::vector<std::uint64_t> before = unauthenticated_counts();

    // (a) a process without a key and (b) one with another key try to join through a member.
    struct Intruder {
        const char* what;
        std::vector<std::string> key_flags;
        std::string address;
        std::unique_ptr<ChildProcess> child;
    };
    std::vector<Intruder> intruders;
    intruders.push_back({"no key", {}, {}, nullptr});
    intruders.push_back({"another key", {"--cluster-key-file", other_key_file_}, {}, nullptr});
    for (std::size_t k = 0; k < intruders.size(); ++k) {
        Intruder& in = intruders[k];
        in.address = "127.0.0.1:" + std::to_string(free_port());
        std::vector<std::string> argv = {chordd_path(),
                                         "--listen",
                                         in.address,
                                         "--data-dir",
                                         dir_.file("intruder" + std::to_string(k)),
                                         "--join",
                                         cluster_->address(k % kMembers),
                                         "--join-timeout",
                                         "4000",
                                         "--vnodes",
                                         "2",
                                         "--log-level",
                                         "info"};
        argv.insert(argv.end(), in.key_flags.begin(), in.key_flags.end());
        in.child = std::make_unique<ChildProcess>(
            argv, dir_.file("intruder" + std::to_string(k) + ".log"));
    }

    // (c) while they try: chordctl without the key, or with another, fails with exit 2 and says
    // why, on every member; keyed chordctl keeps working.
    const std::vector<std::pair<std::size_t, std::vector<std::string>>> commands = {
        {1, {"ring"}}, {2, {"lookup", "k"}}, {0, {"put", "k", "stolen"}}, {2, {"get", "before"}}};
    for (const std::string& key_file : {std::string(), other_key_file_}) {
        const char* which = key_file.empty() ? "no key" : "another key";
        for (const auto& [member, command] : commands) {
            const Outcome out = chordctl(member, key_file, command);
            EXPECT_EQ(out.exit_code, kExitError)
                << which << ", " << command[0] << ": " << out.output;
            EXPECT_NE(out.output.find("cluster key"), std::string::npos)
                << which << ", " << command[0] << " says: " << out.output;
            EXPECT_EQ(out.output.find("before\nv0"), std::string::npos) << out.output;
        }
        EXPECT_EQ(keyed_put_get(0, std::string("during-") + which, "v1"), "");
        EXPECT_EQ(stranger_in_lists(), "");
    }

    // The intruders give up with chordd's join error and never show up in any list.
    for (Intruder& in : intruders) {
        std::string stranger;
        const bool exited = wait_for(
            [&] {
                if (stranger.empty()) stranger = stranger_in_lists();
                return !in.child->running();
            },
            20s, 300ms);
        EXPECT_EQ(stranger, "") << in.what;
        ASSERT_TRUE(exited) << in.what << " still runs:\n" << in.child->log();
        EXPECT_EQ(in.child->wait(1s).value_or(-1), kExitJoin) << in.what << ":\n"
                                                              << in.child->log();
        EXPECT_NE(in.child->log().find("cannot join"), std::string::npos) << in.child->log();
    }

    // The keyed ring is still the ideal ring of its members only, and still serves.
    ASSERT_TRUE(ideal(10s)) << problem_ << "\n" << cluster_->dump();
    EXPECT_EQ(cluster_->live_ids().size(), kMembers * kVnodes);
    EXPECT_EQ(stranger_in_lists(), "");
    EXPECT_EQ(keyed_put_get(1, "after", "v2"), "");
    const Outcome got = chordctl(2, key_file_, {"get", "k"});
    EXPECT_EQ(got.exit_code, 1) << "a keyless put must not have stored anything: " << got.output;

    // (d) every member counted the frames it could not authenticate.
    const std::vector<std::uint64_t> after = unauthenticated_counts();
    for (std::size_t i = 0; i < kMembers; ++i) {
        EXPECT_GT(after[i], before[i]) << cluster_->address(i);
        std::cout << "[key] " << cluster_->address(i) << " frames_unauthenticated " << before[i]
                  << " -> " << after[i] << "\n";
    }
}

// (e) A valid keyed datagram — built here with the codec, since we hold the key — is served
// once; the same bytes again, and copies with stale or future stamps, are rejected and counted.
TEST_F(ClusterKeyTest, ReplayedDatagramIsRejectedAndCounted) {
    // Our own UDP socket: the member answers pings there.
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in self{};
    self.sin_family = AF_INET;
    self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&self), sizeof self), 0);
    socklen_t self_len = sizeof self;
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &self_len), 0);
    timeval receive_timeout{0, 300'000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receive_timeout, sizeof receive_timeout);
    const std::string target = cluster_->address(0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port =
        htons(static_cast<std::uint16_t>(std::stoi(target.substr(target.rfind(':') + 1))));

    std::uint64_t next_rpc = 1000;
    const auto ping = [&] {
        chord::Envelope e;
        e.from = chord::Peer{chord::NodeId::hash("replay-tester"),
                             "127.0.0.1:" + std::to_string(ntohs(self.sin_port))};
        e.to_address = target;
        e.rpc_id = next_rpc++;
        e.reply = false;
        e.body = chord::Ping{};
        return e;
    };
    const auto send = [&](const std::string& datagram) {
        ASSERT_EQ(::sendto(fd, datagram.data(), datagram.size(), 0,
                           reinterpret_cast<const sockaddr*>(&to), sizeof to),
                  static_cast<ssize_t>(datagram.size()));
    };
    // The rpc ids of the pongs that arrive within `quiet` of the last one.
    const auto pongs = [&](std::chrono::milliseconds quiet) {
        std::vector<std::uint64_t> ids;
        const auto deadline = std::chrono::steady_clock::now() + quiet;
        char buffer[65536];
        while (std::chrono::steady_clock::now() < deadline) {
            const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0) continue;
            auto e = net::decode_envelope(std::string_view(buffer, static_cast<std::size_t>(n)),
                                          net::kUdpFrameLimits, &key_);
            if (e && std::holds_alternative<chord::Pong>(e->body)) ids.push_back(e->rpc_id);
        }
        return ids;
    };
    const auto unauthenticated = [&] {
        auto info = cluster_->info(0);
        return info ? info->frames_unauthenticated : ~std::uint64_t{0};
    };

    const std::uint64_t before = unauthenticated();
    ASSERT_NE(before, ~std::uint64_t{0});
    const chord::Envelope first = ping();
    const std::string captured = net::encode_envelope(first, &key_);
    send(captured);
    send(captured);  // the replay
    EXPECT_EQ(pongs(1500ms), std::vector<std::uint64_t>{first.rpc_id});
    ASSERT_TRUE(wait_for([&] { return unauthenticated() >= before + 1; }, 5s));
    EXPECT_EQ(unauthenticated(), before + 1) << "exactly the replay is counted";

    // Stale and future stamps (beyond the 30 s window) are rejected too; a fresh one is served.
    net::FrameStamp stale = net::next_frame_stamp();
    stale.sent_at_ms -= 120'000;
    net::FrameStamp future = net::next_frame_stamp();
    future.sent_at_ms += 120'000;
    send(net::encode_envelope(ping(), &key_, stale));
    send(net::encode_envelope(ping(), &key_, future));
    const chord::Envelope fresh = ping();
    send(net::encode_envelope(fresh, &key_));
    EXPECT_EQ(pongs(1500ms), std::vector<std::uint64_t>{fresh.rpc_id});
    ASSERT_TRUE(wait_for([&] { return unauthenticated() >= before + 3; }, 5s));
    EXPECT_EQ(unauthenticated(), before + 3);
    ::close(fd);

    EXPECT_TRUE(ideal(10s)) << problem_;
    EXPECT_EQ(stranger_in_lists(), "");
}

}  // namespace
}  // namespace chordkv::testing
