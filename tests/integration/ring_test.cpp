// Real chordd processes on loopback form, repair and rejoin one correct Chord ring.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "chord/hash_ring.hpp"
#include "chord/placement.hpp"
#include "cluster.hpp"

namespace chordkv::testing {
namespace {

using namespace std::chrono_literals;

// The owner of `key` according to the sorted vnode ids: successor(SHA-1(key)).
chord::NodeId expected_owner(const std::vector<chord::NodeId>& ids, const std::string& key) {
    const auto kid = chord::NodeId::hash(key);
    auto it = std::lower_bound(ids.begin(), ids.end(), kid);
    return it == ids.end() ? ids.front() : *it;
}

// Pulls "owner":{"id":"<hex>" out of chordctl lookup --json.
std::string owner_id_from_json(const std::string& json) {
    const std::string marker = "\"owner\":{\"id\":\"";
    const auto at = json.find(marker);
    if (at == std::string::npos) return "";
    return json.substr(at + marker.size(), 40);
}

TEST(RingIntegration, TenProcessesFormTheIdealRingAndSurviveCrashes) {
    Cluster cluster({});
    constexpr std::size_t kProcesses = 10;
    std::mt19937 rng(2026);
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    for (std::size_t i = 1; i < kProcesses; ++i) {
        const int via = static_cast<int>(std::uniform_int_distribution<std::size_t>(0, i - 1)(rng));
        ASSERT_TRUE(cluster.start(i, via)) << "process " << i << "\n" << cluster.log(i);
    }
    const auto last_start = std::chrono::steady_clock::now();
    std::string problem;
    const bool ideal = wait_for(
        [&] {
            problem = cluster.ideal_ring_problem();
            return problem.empty();
        },
        15s, 200ms);
    ASSERT_TRUE(ideal) << "not ideal 15 s after the last start: " << problem << "\n"
                       << cluster.dump();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - last_start);
    std::cout << "[ring] 10 x 8 vnodes ideal " << took.count() << " ms after the last start\n";

    // chordctl lookup from every process agrees with the owner computed from the ids.
    const auto ids = cluster.live_ids();
    ASSERT_EQ(ids.size(), kProcesses * 8);
    for (std::size_t i = 0; i < kProcesses; ++i) {
        for (int k = 0; k < 5; ++k) {
            const std::string key = "key-" + std::to_string(i) + "-" + std::to_string(k);
            auto result = run_command(
                {chordctl_path(), "--node", cluster.address(i), "--json", "lookup", key}, 10s);
            ASSERT_EQ(result.exit_code, 0) << result.out;
            EXPECT_EQ(owner_id_from_json(result.out), expected_owner(ids, key).to_hex())
                << "lookup " << key << " from " << cluster.address(i) << ": " << result.out;
        }
    }

    // chordctl ring walks the whole ring.
    auto ring = run_command({chordctl_path(), "--node", cluster.address(3), "ring"}, 10s);
    ASSERT_EQ(ring.exit_code, 0) << ring.out;
    EXPECT_NE(ring.out.find("80 vnodes on 10 processes"), std::string::npos) << ring.out;

    // kill -9 two processes: the rest repair the ring within 10 s.
    const auto before_crash = cluster.info(4);
    ASSERT_TRUE(before_crash);
    cluster.kill9(4);
    cluster.kill9(7);
    const auto crashed_at = std::chrono::steady_clock::now();
    const bool repaired = wait_for(
        [&] {
            problem = cluster.ideal_ring_problem();
            return problem.empty();
        },
        10s, 200ms);
    ASSERT_TRUE(repaired) << "not ideal 10 s after two crashes: " << problem << "\n"
                          << cluster.dump();
    std::cout << "[ring] ideal again "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - crashed_at)
                     .count()
              << " ms after kill -9 of 2 processes\n";
    EXPECT_EQ(cluster.live_ids().size(), 8u * 8u);

    // A restarted process comes back with the same ids and rejoins.
    ASSERT_TRUE(cluster.start(4, 0)) << cluster.log(4);
    auto after_restart = cluster.info(4);
    ASSERT_TRUE(after_restart);
    ASSERT_EQ(after_restart->vnodes.size(), before_crash->vnodes.size());
    for (std::size_t v = 0; v < before_crash->vnodes.size(); ++v) {
        EXPECT_EQ(after_restart->vnodes[v].id, before_crash->vnodes[v].id);
    }
    ASSERT_TRUE(wait_for(
        [&] {
            problem = cluster.ideal_ring_problem();
            return problem.empty();
        },
        15s, 200ms))
        << "restarted process did not rejoin: " << problem;
    EXPECT_EQ(cluster.live_ids().size(), 9u * 8u);
}

// Processes that join one at a time place their vnodes (chord/placement.hpp): four processes
// of 8 vnodes own a quarter of the ring each, and of the keys. SHA-1 ids would leave them
// anywhere from 0.11 to 0.36 (the unit test's ten-process ring shows the spread).
TEST(RingIntegration, JoiningProcessesTakeEvenShares) {
    Cluster cluster({});
    constexpr std::size_t kProcesses = 4;
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    for (std::size_t i = 1; i < kProcesses; ++i) {
        ASSERT_TRUE(cluster.start(i, static_cast<int>(i - 1))) << cluster.log(i);
    }
    std::string problem;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
        << problem << "\n"
        << cluster.dump();

    std::map<chord::NodeId, std::string> ring;
    for (std::size_t i = 0; i < kProcesses; ++i) {
        auto info = cluster.info(i);
        ASSERT_TRUE(info) << info.error().message();
        for (const auto& v : info->vnodes) ring.emplace(v.id, cluster.address(i));
    }
    ASSERT_EQ(ring.size(), kProcesses * 8);
    for (const auto& [address, share] : chord::ring_shares(ring)) {
        std::cout << "[placement] " << address << " owns " << share << " of the ring\n";
        EXPECT_NEAR(share, 0.25, 0.005) << address;
    }

    // The keys follow the arcs: 4,000 keys, each process owns about 1,000 of them.
    constexpr int kKeys = 4000;
    const auto file = std::filesystem::path(cluster.data_dir(0)).parent_path() / "keys.tsv";
    {
        std::ofstream out(file);
        for (int k = 0; k < kKeys; ++k) out << "even-" << k << "\tv\n";
    }
    auto loaded =
        run_command({chordctl_path(), "--node", cluster.address(0), "load", file.string()}, 30s);
    ASSERT_EQ(loaded.exit_code, 0) << loaded.out;
    std::uint64_t owned_total = 0;
    std::vector<std::uint64_t> owned(kProcesses, 0);
    ASSERT_TRUE(wait_for(
        [&] {
            owned_total = 0;
            for (std::size_t i = 0; i < kProcesses; ++i) {
                auto info = cluster.info(i, /*keys=*/true);
                if (!info) return false;
                owned[i] = 0;
                for (const auto& v : info->vnodes) owned[i] += v.keys_owned;
                owned_total += owned[i];
            }
            return owned_total == kKeys;
        },
        10s))
        << owned_total << " keys owned, " << kKeys << " written";
    for (std::size_t i = 0; i < kProcesses; ++i) {
        // 1,000 expected; binomial spread about 27, so 850..1150 holds unless the arcs are off.
        EXPECT_GT(owned[i], 850u) << cluster.address(i);
        EXPECT_LT(owned[i], 1150u) << cluster.address(i);
    }
}

// --vnode-placement hashed: a joining process's ids are SHA-1("<address>#<i>"), as HashRing
// computes them from the address.
TEST(RingIntegration, HashedPlacementUsesSha1Ids) {
    ClusterOptions options;
    options.vnodes = 4;
    options.extra_flags = {"--vnode-placement", "hashed"};
    Cluster cluster(options);
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    ASSERT_TRUE(cluster.start(1, 0)) << cluster.log(1);
    auto info = cluster.info(1);
    ASSERT_TRUE(info) << info.error().message();
    ASSERT_EQ(info->vnodes.size(), 4u);
    for (std::uint32_t v = 0; v < 4; ++v) {
        EXPECT_EQ(info->vnodes[v].id, chord::HashRing::point_id(cluster.address(1), v));
    }
}

TEST(RingIntegration, GracefulLeaveOnSigterm) {
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    ASSERT_TRUE(cluster.start(1, 0)) << cluster.log(1);
    ASSERT_TRUE(cluster.start(2, 1)) << cluster.log(2);
    std::string problem;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
        << problem << "\n"
        << cluster.dump();
    const auto status = cluster.terminate(1, 10s);
    ASSERT_TRUE(status.has_value()) << "chordd did not exit on SIGTERM";
    EXPECT_EQ(*status, 0) << cluster.log(1);
    EXPECT_NE(cluster.log(1).find("neighbours acknowledged"), std::string::npos) << cluster.log(1);
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 10s))
        << problem << "\n"
        << cluster.dump();
}

TEST(RingIntegration, ClearErrorsForBadStarts) {
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    // Port in use.
    auto in_use = run_command({chordd_path(), "--listen", cluster.address(0), "--data-dir",
                               "/tmp/chordkv-it-unused-" + std::to_string(::getpid())},
                              20s);
    EXPECT_EQ(in_use.exit_code, 4);
    // Unreachable seed: a free port nobody listens on, with a short join timeout.
    const int nobody = free_port();
    auto no_seed =
        run_command({chordd_path(), "--listen", "127.0.0.1:" + std::to_string(free_port()),
                     "--data-dir", "/tmp/chordkv-it-noseed-" + std::to_string(::getpid()), "--join",
                     "127.0.0.1:" + std::to_string(nobody), "--join-timeout", "1500"},
                    20s);
    EXPECT_EQ(no_seed.exit_code, 5);
    // Unwritable data dir (a path under a regular file).
    auto bad_dir =
        run_command({chordd_path(), "--listen", "127.0.0.1:" + std::to_string(free_port()),
                     "--data-dir", "/proc/version/data"},
                    20s);
    EXPECT_EQ(bad_dir.exit_code, 3);
    // Bad address.
    auto bad_address = run_command({chordd_path(), "--listen", "localhost"}, 20s);
    EXPECT_EQ(bad_address.exit_code, 2);
    std::error_code ignored;
    std::filesystem::remove_all("/tmp/chordkv-it-unused-" + std::to_string(::getpid()), ignored);
    std::filesystem::remove_all("/tmp/chordkv-it-noseed-" + std::to_string(::getpid()), ignored);
}

TEST(RingIntegration, GarbageFloodDoesNotStopTheNode) {
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    ASSERT_TRUE(cluster.start(1, 0)) << cluster.log(1);
    const std::string target = cluster.address(0);
    const int port = std::stoi(target.substr(target.rfind(':') + 1));

    std::atomic<bool> flooding{true};
    std::atomic<int> sent{0};
    std::thread udp_flood([&] {
        const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        to.sin_port = htons(static_cast<std::uint16_t>(port));
        std::mt19937_64 rng(99);
        std::vector<char> junk(1200);
        for (int i = 0; i < 100'000; ++i) {
            const std::size_t n = 1 + rng() % junk.size();
            for (std::size_t b = 0; b < n; ++b) junk[b] = static_cast<char>(rng());
            // Every 10th datagram starts with a valid-looking magic to reach deeper checks.
            if (i % 10 == 0 && n >= 4) std::memcpy(junk.data(), "CKV\x01", 4);
            ::sendto(fd, junk.data(), n, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
            sent.fetch_add(1);
        }
        ::close(fd);
        flooding = false;
    });
    std::thread tcp_flood([&] {
        std::mt19937_64 rng(7);
        for (int i = 0; i < 300 && flooding; ++i) {
            const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in to{};
            to.sin_family = AF_INET;
            to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            to.sin_port = htons(static_cast<std::uint16_t>(port));
            if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) {
                std::vector<char> junk(1 + rng() % 4096);
                for (auto& c : junk) c = static_cast<char>(rng());
                [[maybe_unused]] auto w = ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
            }
            ::close(fd);
        }
    });
    int rings_ok = 0, rings = 0;
    while (flooding) {
        auto ring = run_command({chordctl_path(), "--node", target, "ring"}, 10s);
        ++rings;
        if (ring.exit_code == 0) ++rings_ok;
        EXPECT_EQ(ring.exit_code, 0) << ring.out;
    }
    udp_flood.join();
    tcp_flood.join();
    EXPECT_EQ(sent.load(), 100'000);
    EXPECT_GT(rings, 0);
    EXPECT_EQ(rings_ok, rings);
    auto info = cluster.info(0);
    ASSERT_TRUE(info) << info.error().message();
    EXPECT_GT(info->frames_dropped, 0u);
    std::cout << "[flood] " << rings_ok << "/" << rings << " ring walks answered during 100000"
              << " garbage datagrams; node counted " << info->frames_dropped << " dropped\n";
    std::string problem;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 10s))
        << problem;
}

}  // namespace
}  // namespace chordkv::testing

namespace chordkv::testing {
namespace {

TEST(RingIntegration, ClusterKeyKeepsOutsidersOut) {
    const std::string dir = "/tmp/chordkv-keys-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir);
    const std::string key = dir + "/key", other = dir + "/other";
    {
        std::ofstream(key) << "0123456789abcdef0123456789abcdef\n";
        std::ofstream(other) << "fedcba9876543210fedcba9876543210\n";
    }
    ClusterOptions options;
    options.key_file = key;
    Cluster cluster(options);
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    ASSERT_TRUE(cluster.start(1, 0)) << cluster.log(1);
    auto keyed_ring = [&](std::size_t i) {
        return run_command(
            {chordctl_path(), "--node", cluster.address(i), "--cluster-key-file", key, "ring"},
            10s);
    };
    auto ring = keyed_ring(1);
    EXPECT_EQ(ring.exit_code, 0) << ring.out;
    std::string problem;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 10s))
        << problem;

    // Without the key, or with another key, chordctl gets nothing.
    auto unkeyed = run_command(
        {chordctl_path(), "--node", cluster.address(0), "--timeout", "1000", "ring"}, 10s);
    EXPECT_EQ(unkeyed.exit_code, 2);
    auto wrong = run_command({chordctl_path(), "--node", cluster.address(0), "--timeout", "1000",
                              "--cluster-key-file", other, "ring"},
                             10s);
    EXPECT_EQ(wrong.exit_code, 2);

    // A process with another key cannot join, and the cluster keeps serving.
    auto outsider =
        run_command({chordd_path(), "--listen", "127.0.0.1:" + std::to_string(free_port()),
                     "--data-dir", dir + "/outsider", "--join", cluster.address(0),
                     "--join-timeout", "2000", "--cluster-key-file", other},
                    20s);
    EXPECT_EQ(outsider.exit_code, 5);
    EXPECT_NE(keyed_ring(0).out.find("16 vnodes on 2 processes"), std::string::npos);
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
}

}  // namespace
}  // namespace chordkv::testing
