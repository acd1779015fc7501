// The data path with real processes: put/get/del through any node, replication on R = 3
// processes, reads surviving a kill -9, and a restart on the same data dir.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "cluster.hpp"
#include "net/admin_codec.hpp"
#include "net/request_client.hpp"
#include "node/client.hpp"

namespace chordkv::testing {
namespace {

using namespace std::chrono_literals;

Client client_of(Cluster& cluster, std::size_t i) {
    ClientOptions o;
    o.seeds = {cluster.address(i)};
    o.timeout = 5s;
    return Client(o);
}

TEST(DataIntegration, PutGetDeleteSurviveACrashAndARestart) {
    Cluster cluster({});
    constexpr std::size_t kProcesses = 5;
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    for (std::size_t i = 1; i < kProcesses; ++i) {
        ASSERT_TRUE(cluster.start(i, static_cast<int>(i - 1))) << cluster.log(i);
    }
    std::string problem;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
        << problem;

    // 2,000 keys through random nodes, binary-safe values.
    std::mt19937 rng(5);
    std::map<std::string, std::string> expected;
    std::vector<Client> clients;
    for (std::size_t i = 0; i < kProcesses; ++i) clients.push_back(client_of(cluster, i));
    for (int k = 0; k < 2000; ++k) {
        const std::string key = "key-" + std::to_string(k);
        std::string value = "value-" + std::to_string(k) + std::string("\0\xff", 2);
        auto version = clients[rng() % kProcesses].put(key, value);
        ASSERT_TRUE(version) << key << ": " << version.error().message();
        expected[key] = value;
    }
    // Deletes stay deleted.
    for (int k = 0; k < 2000; k += 20) {
        const std::string key = "key-" + std::to_string(k);
        ASSERT_TRUE(clients[rng() % kProcesses].del(key));
        expected.erase(key);
    }
    auto check_all = [&](const std::vector<std::size_t>& via, bool quorum) {
        int wrong = 0;
        for (int k = 0; k < 2000; ++k) {
            const std::string key = "key-" + std::to_string(k);
            auto got = clients[via[static_cast<std::size_t>(k) % via.size()]].get(key, quorum);
            if (!got) {
                ADD_FAILURE() << key << ": " << got.error().message();
                ++wrong;
                continue;
            }
            auto it = expected.find(key);
            if (it == expected.end()) {
                if (got->found) ++wrong;
            } else if (!got->found || got->value != it->second) {
                ++wrong;
            }
        }
        return wrong;
    };
    EXPECT_EQ(check_all({0, 1, 2, 3, 4}, false), 0);
    EXPECT_EQ(check_all({4, 3}, true), 0);

    // kill -9 of one process: its keys are served by their replicas.
    cluster.kill9(2);
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
        << problem;
    EXPECT_EQ(check_all({0, 1, 3, 4}, false), 0);

    // The process restarted on its data dir serves its keys again.
    ASSERT_TRUE(cluster.start(2, 0)) << cluster.log(2);
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
        << problem;
    clients[2] = client_of(cluster, 2);
    EXPECT_EQ(check_all({2}, false), 0);

    // Bad input: an oversized key is refused with a clear error, and nothing else changes.
    auto too_big = clients[0].put(std::string(70 * 1024, 'k'), "v");
    ASSERT_FALSE(too_big);
    EXPECT_EQ(too_big.code(), Errc::too_large) << too_big.error().message();
}

TEST(DataIntegration, ChordctlPutGetDel) {
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    ASSERT_TRUE(cluster.start(1, 0)) << cluster.log(1);
    const auto ctl = [&](std::vector<std::string> args) {
        std::vector<std::string> argv = {chordctl_path(), "--node", cluster.address(1)};
        argv.insert(argv.end(), args.begin(), args.end());
        return run_command(argv, 10s);
    };
    EXPECT_EQ(ctl({"put", "greeting", "hello world"}).exit_code, 0);
    auto got = ctl({"get", "greeting"});
    EXPECT_EQ(got.exit_code, 0);
    EXPECT_EQ(got.out, "hello world");
    EXPECT_EQ(ctl({"del", "greeting"}).exit_code, 0);
    EXPECT_EQ(ctl({"get", "greeting"}).exit_code, 1);
    EXPECT_EQ(ctl({"get", "never-written"}).exit_code, 1);
    EXPECT_EQ(ctl({"frobnicate"}).exit_code, 2);
}

}  // namespace
}  // namespace chordkv::testing

namespace chordkv::testing {
namespace {

// How many running processes hold a record (value or tombstone) of `key`, asked directly.
int copies_of(Cluster& cluster, const std::vector<std::size_t>& live, const std::string& key,
              std::map<std::size_t, std::unique_ptr<net::RequestClient>>& conns) {
    int copies = 0;
    for (std::size_t i : live) {
        auto& c = conns[i];
        if (!c) {
            auto made = net::RequestClient::connect(cluster.address(i), 2s);
            if (!made) continue;
            c = std::move(made).value();
        }
        auto frame = c->call(net::encode_admin(net::ReadReplicaRequest{1, key}, nullptr), 2s);
        if (!frame) {
            c.reset();
            continue;
        }
        auto r = net::decode_admin<net::ReadReplicaReply>(frame->payload);
        if (r && r->exists) ++copies;
    }
    return copies;
}

// Keys (of `keys`) with fewer than `r` copies on the live processes.
std::size_t under_replicated(Cluster& cluster, const std::vector<std::size_t>& live,
                             const std::vector<std::string>& keys, int r) {
    std::map<std::size_t, std::unique_ptr<net::RequestClient>> conns;
    std::size_t under = 0;
    for (const auto& key : keys) {
        if (copies_of(cluster, live, key, conns) < r) ++under;
    }
    return under;
}

TEST(DataIntegration, RepairRestoresThreeCopiesAfterEachCrash) {
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    for (std::size_t i = 1; i < 5; ++i) {
        ASSERT_TRUE(cluster.start(i, 0)) << cluster.log(i);
    }
    std::string problem;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
        << problem;
    Client client = client_of(cluster, 0);
    std::vector<std::string> keys;
    for (int k = 0; k < 1000; ++k) {
        keys.push_back("r-" + std::to_string(k));
        ASSERT_TRUE(client.put(keys.back(), "v" + std::to_string(k)));
    }
    for (int k = 0; k < 1000; k += 10) ASSERT_TRUE(client.del(keys[static_cast<std::size_t>(k)]));
    std::vector<std::size_t> live = {0, 1, 2, 3, 4};
    ASSERT_TRUE(wait_for([&] { return under_replicated(cluster, live, keys, 3) == 0; }, 30s));

    for (std::size_t victim : {std::size_t{3}, std::size_t{1}}) {
        cluster.kill9(victim);
        live.erase(std::find(live.begin(), live.end(), victim));
        ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
            << problem;
        const auto started = std::chrono::steady_clock::now();
        ASSERT_TRUE(
            wait_for([&] { return under_replicated(cluster, live, keys, 3) == 0; }, 60s, 500ms))
            << "keys stayed under 3 copies after kill -9 of process " << victim;
        std::cout << "[repair] 3 copies of every key again "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - started)
                         .count()
                  << " ms after the ring healed\n";
        Client reader = client_of(cluster, live.front());
        for (int k = 0; k < 1000; ++k) {
            auto got = reader.get(keys[static_cast<std::size_t>(k)]);
            ASSERT_TRUE(got) << got.error().message();
            if (k % 10 == 0) {
                EXPECT_FALSE(got->found) << keys[static_cast<std::size_t>(k)] << " came back";
            } else {
                EXPECT_TRUE(got->found && got->value == "v" + std::to_string(k))
                    << keys[static_cast<std::size_t>(k)];
            }
        }
    }
}

}  // namespace
}  // namespace chordkv::testing
