// The data path with real processes: put/get/del through any node, replication on R = 3
// processes, reads surviving a kill -9, and a restart on the same data dir.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "cluster.hpp"
#include "net/admin_codec.hpp"
#include "net/request_client.hpp"
#include "node/client.hpp"
#include "node/node.hpp"
#include "node/sync_entry.hpp"

namespace chordkv::testing {
namespace {

using namespace std::chrono_literals;

// Starts processes 0..n-1 (0 a new ring, the others joining through it) and waits until they
// form the ideal ring. Use with ASSERT_NO_FATAL_FAILURE.
void start_ring(Cluster& cluster, std::size_t n) {
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    for (std::size_t i = 1; i < n; ++i) ASSERT_TRUE(cluster.start(i, 0)) << cluster.log(i);
    std::string problem;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
        << problem;
}

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

TEST(DataIntegration, AnUnknownRequestTypeIsRefusedWithTheCallersRequestId) {
    // A request type this build does not know (a newer peer's, during a rolling upgrade) gets
    // an ErrorReply carrying the caller's request id, so the caller's call fails at once
    // instead of waiting for its deadline; the connection stays usable.
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    auto conn = net::RequestClient::connect(cluster.address(0), 2s);
    ASSERT_TRUE(conn);
    std::string payload(8, '\0');
    payload[0] = 42;  // request id 42, little-endian
    payload += "whatever a newer build puts here";
    auto frame = (*conn)->call(net::encode_frame(99, payload, nullptr), 5s);
    ASSERT_TRUE(frame);
    ASSERT_EQ(frame->type, net::admin_type<net::ErrorReply>());
    auto error = net::decode_admin<net::ErrorReply>(frame->payload);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->request_id, 42u);
    EXPECT_NE(error->message.find("unknown request type 99"), std::string::npos) << error->message;
    auto info = (*conn)->call(net::encode_admin(net::InfoRequest{7, false}, nullptr), 5s);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->type, net::admin_type<net::InfoReply>());
}

TEST(DataIntegration, PipelinedRequestsOnOneConnectionKeepTheirOrder) {
    // An owner writes the puts of one io turn together, at the end of the turn (group
    // commit). A get pipelined behind a put of the same key, in the same write, must still
    // read that put, and a put behind a get must not show in it: each request sees the
    // requests sent before it on its connection, as if they were served one at a time.
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);  // alone: it owns every key
    ASSERT_TRUE(wait_for([&] { return cluster.ideal_ring_problem().empty(); }, 15s));
    auto conn = net::RequestClient::connect(cluster.address(0), 2s);
    ASSERT_TRUE(conn) << conn.error().message();
    constexpr int kKeys = 40;
    // Round 1 writes "old-" values; round 2 sends, per key, get, put "new-", get, in one write.
    std::string first;
    for (int k = 0; k < kKeys; ++k) {
        const std::string key = "order-" + std::to_string(k);
        first +=
            net::encode_admin(net::PutRequest{std::uint64_t(k + 1), key, "old-" + key}, nullptr);
    }
    std::string second;
    for (int k = 0; k < kKeys; ++k) {
        const std::string key = "order-" + std::to_string(k);
        const std::uint64_t id = 1000 + std::uint64_t(k) * 3;
        second += net::encode_admin(net::GetRequest{id, key}, nullptr);
        second += net::encode_admin(net::PutRequest{id + 1, key, "new-" + key}, nullptr);
        second += net::encode_admin(net::GetRequest{id + 2, key}, nullptr);
    }
    for (int k = 0; k < kKeys; ++k) {
        auto frame = k == 0 ? (*conn)->call(first, 5s) : (*conn)->receive(5s);
        ASSERT_TRUE(frame) << frame.error().message();
        ASSERT_EQ(frame->type, net::admin_type<net::PutReply>());
    }
    std::map<std::uint64_t, std::string> got;  // request id -> value read ("" absent)
    for (int r = 0; r < 3 * kKeys; ++r) {
        auto frame = r == 0 ? (*conn)->call(second, 5s) : (*conn)->receive(5s);
        ASSERT_TRUE(frame) << frame.error().message();
        if (frame->type == net::admin_type<net::PutReply>()) continue;
        ASSERT_EQ(frame->type, net::admin_type<net::GetReply>());
        auto reply = net::decode_admin<net::GetReply>(frame->payload);
        ASSERT_TRUE(reply);
        got[reply->request_id] = reply->found ? reply->value : "";
    }
    ASSERT_EQ(got.size(), std::size_t(2 * kKeys));
    for (int k = 0; k < kKeys; ++k) {
        const std::string key = "order-" + std::to_string(k);
        const std::uint64_t id = 1000 + std::uint64_t(k) * 3;
        EXPECT_EQ(got[id], "old-" + key) << "the get sent before the put";
        EXPECT_EQ(got[id + 2], "new-" + key) << "the get sent after the put";
    }
}

TEST(DataIntegration, ArcDigestsAreAnsweredOnceEachOffTheIoThread) {
    // A holder computes anti-entropy digests on a thread of its own (Node::digest_async), so a
    // large arc does not stall its io thread, with at most kDigestsQueuedMax waiting. Many
    // SyncDigestRequests in one write: each is answered exactly once, with its request id,
    // by a digest of every key stored or by busy; a bad bucket count gets invalid_argument;
    // and requests sent after them are still served.
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    Client client = client_of(cluster, 0);
    constexpr std::size_t kKeys = 300;
    for (std::size_t i = 0; i < kKeys; ++i) {
        ASSERT_TRUE(client.put("digest-key-" + std::to_string(i), "v")) << i;
    }
    auto conn = net::RequestClient::connect(cluster.address(0), 2s);
    ASSERT_TRUE(conn);
    constexpr std::uint64_t kRequests = Node::kDigestsQueuedMax + 8;
    constexpr std::uint64_t kBadRequest = 1000;
    const chord::NodeId whole = chord::NodeId::hash("anywhere");  // (x, x]: the whole ring
    std::string frames;
    for (std::uint64_t id = 1; id <= kRequests; ++id) {
        frames += net::encode_admin(net::SyncDigestRequest{id, whole, whole, 16}, nullptr);
    }
    frames += net::encode_admin(net::SyncDigestRequest{kBadRequest, whole, whole, 0}, nullptr);
    std::set<std::uint64_t> answered;
    std::size_t digests = 0;
    for (std::uint64_t i = 0; i <= kRequests; ++i) {
        auto frame = (*conn)->call(i == 0 ? frames : std::string(), 10s);
        ASSERT_TRUE(frame) << frame.error().message();
        if (frame->type == net::admin_type<net::SyncDigestReply>()) {
            auto reply = net::decode_admin<net::SyncDigestReply>(frame->payload);
            ASSERT_TRUE(reply);
            EXPECT_TRUE(answered.insert(reply->request_id).second) << reply->request_id;
            EXPECT_LE(reply->request_id, kRequests);
            std::uint64_t keys = 0;
            for (std::uint64_t c : detail::unpack_digest_counts(reply->counts)) keys += c;
            EXPECT_EQ(keys, kKeys);
            EXPECT_EQ(reply->hashes.size(), 16u * 32u);
            ++digests;
        } else {
            ASSERT_EQ(frame->type, net::admin_type<net::ErrorReply>());
            auto error = net::decode_admin<net::ErrorReply>(frame->payload);
            ASSERT_TRUE(error);
            EXPECT_TRUE(answered.insert(error->request_id).second) << error->request_id;
            const auto expected =
                error->request_id == kBadRequest ? Errc::invalid_argument : Errc::busy;
            EXPECT_EQ(error->code, static_cast<int>(expected)) << error->message;
        }
    }
    EXPECT_EQ(answered.size(), kRequests + 1);
    EXPECT_TRUE(answered.count(kBadRequest));
    // At least the first kDigestsQueuedMax fit the queue.
    EXPECT_GE(digests, Node::kDigestsQueuedMax);
    auto info = (*conn)->call(net::encode_admin(net::InfoRequest{7, false}, nullptr), 5s);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->type, net::admin_type<net::InfoReply>());
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
    // stats counts keys unless told not to (the count reads every key on the node).
    auto counted = ctl({"--json", "stats"});
    EXPECT_EQ(counted.exit_code, 0);
    EXPECT_NE(counted.out.find("\"keys_owned\":"), std::string::npos) << counted.out;
    auto uncounted = ctl({"--json", "--no-key-count", "stats"});
    EXPECT_EQ(uncounted.exit_code, 0);
    EXPECT_EQ(uncounted.out.find("\"keys_owned\":"), std::string::npos) << uncounted.out;
    EXPECT_NE(uncounted.out.find("\"arc_settled\":"), std::string::npos) << uncounted.out;
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

// Every entry (value or tombstone) process i holds, read from its whole store (SyncScan of
// the whole ring, page by page). nullopt when it does not answer.
std::optional<std::vector<net::SyncEntry>> dump_of(Cluster& cluster, std::size_t i) {
    auto conn = net::RequestClient::connect(cluster.address(i), 2s);
    if (!conn) return std::nullopt;
    std::vector<net::SyncEntry> out;
    std::optional<std::string> resume;
    do {
        net::SyncScanRequest request{1,
                                     chord::NodeId(),
                                     chord::NodeId(),
                                     resume,
                                     2048,
                                     static_cast<std::uint8_t>(net::SyncPurpose::dump)};
        auto frame = (*conn)->call(net::encode_admin(request, nullptr), 5s);
        if (!frame || frame->type != net::admin_type<net::SyncScanReply>()) return std::nullopt;
        auto reply = net::decode_admin<net::SyncScanReply>(frame->payload);
        if (!reply) return std::nullopt;
        for (auto& e : reply->entries) out.push_back(std::move(e));
        resume = reply->resume_after;
    } while (resume);
    return out;
}

// How many of the live processes hold a record (value or tombstone) of each key (a few
// hundred requests instead of one per key and process). nullopt when a process does not
// answer.
std::optional<std::map<std::string, int>> copies_by_key(Cluster& cluster,
                                                        const std::vector<std::size_t>& live) {
    std::map<std::string, int> copies;
    for (std::size_t i : live) {
        auto entries = dump_of(cluster, i);
        if (!entries) return std::nullopt;
        for (const auto& e : *entries) ++copies[e.key];
    }
    return copies;
}

// Keys (of `keys`) with fewer than `r` copies on the live processes (all of them when a
// process does not answer).
std::size_t under_replicated(Cluster& cluster, const std::vector<std::size_t>& live,
                             const std::vector<std::string>& keys, int r) {
    auto copies = copies_by_key(cluster, live);
    if (!copies) return keys.size();
    std::size_t under = 0;
    for (const auto& key : keys) {
        auto it = copies->find(key);
        if (it == copies->end() || it->second < r) ++under;
    }
    return under;
}

// Waits until every key has exactly `r` copies (values or tombstones): none missing, and no
// copy left behind on a process outside the key's replica set.
bool wait_exactly_replicated(Cluster& cluster, const std::vector<std::size_t>& live,
                             const std::vector<std::string>& keys, int r,
                             std::chrono::milliseconds timeout) {
    std::size_t off = keys.size();
    std::size_t extra = 0;
    const bool done = wait_for(
        [&] {
            auto copies = copies_by_key(cluster, live);
            if (!copies) return false;
            off = 0;
            extra = 0;
            for (const auto& key : keys) {
                auto it = copies->find(key);
                const int n = it == copies->end() ? 0 : it->second;
                if (n != r) ++off;
                if (n > r) ++extra;
            }
            return off == 0;
        },
        timeout, 500ms);
    if (!done)
        std::cout << off << " keys without exactly " << r << " copies (" << extra
                  << " with more)\n";
    return done;
}

// --sync-writes: the puts an owner receives in one io turn are written in one batch with one
// fsync (group commit), then replicated. Concurrent writers, so that batches hold several
// puts and some hold several writes of one key, lose nothing: every key ends with 3 copies
// and its acknowledged value, and of a key every writer wrote, the write with the highest
// acknowledged version is what every copy answers.
TEST(DataIntegration, SyncWritesAreGroupCommittedAndLoseNothing) {
    ClusterOptions options;
    options.extra_flags = {"--sync-writes"};
    Cluster cluster(options);
    ASSERT_NO_FATAL_FAILURE(start_ring(cluster, 3));

    constexpr int kWriters = 8;
    constexpr int kKeysEach = 60;
    std::vector<std::vector<std::string>> errors(kWriters);
    // Per writer: its acknowledged writes of the shared key, (version, value).
    std::vector<std::vector<std::pair<std::uint64_t, std::string>>> shared(kWriters);
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
        writers.emplace_back([&, w] {
            Client client = client_of(cluster, static_cast<std::size_t>(w) % 3);
            for (int k = 0; k < kKeysEach; ++k) {
                const std::string key = "sync-" + std::to_string(w) + "-" + std::to_string(k);
                auto put = client.put(key, "v" + key);
                if (!put) errors[w].push_back(key + ": " + put.error().message());
                if (k % 10 == 0) {
                    const std::string value = "w" + std::to_string(w) + "-" + std::to_string(k);
                    auto version = client.put("sync-shared", value);
                    if (version) {
                        shared[w].emplace_back(*version, value);
                    } else {
                        errors[w].push_back("sync-shared: " + version.error().message());
                    }
                }
            }
        });
    }
    for (auto& t : writers) t.join();
    for (const auto& list : errors) {
        for (const auto& e : list) ADD_FAILURE() << e;
    }

    std::vector<std::string> keys = {"sync-shared"};
    std::pair<std::uint64_t, std::string> newest{0, ""};
    for (const auto& list : shared) {
        for (const auto& write : list) newest = std::max(newest, write);
    }
    ASSERT_GT(newest.first, 0u);
    Client reader = client_of(cluster, 0);
    for (int w = 0; w < kWriters; ++w) {
        for (int k = 0; k < kKeysEach; ++k) {
            keys.push_back("sync-" + std::to_string(w) + "-" + std::to_string(k));
            auto got = reader.get(keys.back());
            ASSERT_TRUE(got) << keys.back() << ": " << got.error().message();
            EXPECT_TRUE(got->found && got->value == "v" + keys.back()) << keys.back();
        }
    }
    auto got = reader.get("sync-shared", /*quorum=*/true);
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_TRUE(got->found && got->value == newest.second)
        << "sync-shared is '" << (got->found ? got->value : "<absent>") << "', the write with "
        << "the highest version was '" << newest.second << "'";
    EXPECT_TRUE(wait_for(
        [&] {
            return under_replicated(cluster, {0, 1, 2}, keys, 3) == 0;
        },
        30s, 500ms));
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

namespace chordkv::testing {
namespace {

std::size_t wrong_reads(Client& client, const std::vector<std::string>& keys,
                        const std::vector<std::optional<std::string>>& expected);

// Owner process index of each key, from the vnode ids the running processes report.
std::vector<int> owners_of(Cluster& cluster, const std::vector<std::size_t>& live,
                           const std::vector<std::string>& keys) {
    std::map<chord::NodeId, int> vnode_process;
    for (std::size_t i : live) {
        auto info = cluster.info(i);
        if (!info) return {};
        for (const auto& v : info->vnodes) vnode_process[v.id] = static_cast<int>(i);
    }
    std::vector<int> out;
    out.reserve(keys.size());
    for (const auto& key : keys) {
        auto it = vnode_process.lower_bound(chord::NodeId::hash(key));
        out.push_back(it == vnode_process.end() ? vnode_process.begin()->second : it->second);
    }
    return out;
}

TEST(DataIntegration, JoinDuringWritesMovesOnlyTheNewArcsAndLosesNothing) {
    // 128 vnodes per process: a process's share of the ring varies as 1/sqrt(vnodes) (35% at
    // 8), and the new process's 1/6 must be within 25% (here about 9%, so about 3 sigma).
    ClusterOptions options;
    options.vnodes = 128;
    options.extra_flags = {"--repair-interval", "50"};  // a round over 128 vnodes in ~6 s
    Cluster cluster(options);
    ASSERT_NO_FATAL_FAILURE(start_ring(cluster, 5));
    std::string problem;

    constexpr int kKeys = 20'000;
    std::vector<std::string> keys;
    std::vector<std::optional<std::string>> latest(kKeys);
    // Loaded with `chordctl load` (pipelined), as a user would.
    const std::string file = ::testing::TempDir() + "/join-keys.tsv";
    {
        std::ofstream out(file, std::ios::trunc);
        for (int k = 0; k < kKeys; ++k) {
            keys.push_back("j-" + std::to_string(k));
            latest[static_cast<std::size_t>(k)] = "a" + std::to_string(k);
            out << keys.back() << '\t' << *latest[static_cast<std::size_t>(k)] << '\n';
        }
    }
    const auto load_start = std::chrono::steady_clock::now();
    auto loaded = run_command({chordctl_path(), "--node", cluster.address(1), "load", file}, 120s);
    ASSERT_EQ(loaded.exit_code, 0) << loaded.out;
    std::cout << "[join] loaded " << kKeys << " keys with chordctl load in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - load_start)
                     .count()
              << " ms\n";
    Client loader = client_of(cluster, 1);
    // Deletes must stay deleted through the join (unless the writer below writes them again).
    for (std::size_t k = 0; k < keys.size(); k += 25) {
        ASSERT_TRUE(loader.del(keys[k]));
        latest[k].reset();
    }
    const auto before = owners_of(cluster, {0, 1, 2, 3, 4}, keys);
    ASSERT_EQ(before.size(), keys.size());

    // A writer keeps updating keys (bounded in count and time) while process 5 joins.
    std::atomic<bool> stop{false};
    std::atomic<int> written{0};
    std::vector<std::pair<int, std::string>> acked;
    std::thread writer([&] {
        Client c = client_of(cluster, 2);
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        for (int n = 0; n < 5'000 && !stop && std::chrono::steady_clock::now() < deadline; ++n) {
            const int k = (n * 7919) % kKeys;
            const std::string value = "b" + std::to_string(n);
            if (c.put(keys[static_cast<std::size_t>(k)], value)) acked.emplace_back(k, value);
            written.fetch_add(1);
        }
    });
    ASSERT_TRUE(wait_for([&] { return written.load() >= 300; }, 20s));
    ASSERT_TRUE(cluster.start(5, 3)) << cluster.log(5);
    ASSERT_TRUE(wait_for([&] { return written.load() >= 1'500; }, 30s));
    stop = true;
    writer.join();
    for (const auto& [k, value] : acked) latest[static_cast<std::size_t>(k)] = value;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
        << problem;

    // Ownership moved only to the new process, about 1/6 of the keys.
    const auto after = owners_of(cluster, {0, 1, 2, 3, 4, 5}, keys);
    ASSERT_EQ(after.size(), keys.size());
    std::size_t moved = 0;
    for (std::size_t k = 0; k < keys.size(); ++k) {
        if (before[k] == after[k]) continue;
        ++moved;
        ASSERT_EQ(after[k], 5) << keys[k] << " moved between old processes";
    }
    const double expected = kKeys / 6.0;
    std::cout << "[join] " << moved << " keys changed owner (1/6 = " << expected << "), "
              << acked.size() << " writes acknowledged during the join\n";
    EXPECT_GT(moved, 0.75 * expected);
    EXPECT_LT(moved, 1.25 * expected);

    // Every key reads back its latest acknowledged value (once repair has moved the arc).
    Client reader = client_of(cluster, 5);
    std::size_t stale = 0;
    std::optional<std::size_t> first_pass;
    const auto read_start = std::chrono::steady_clock::now();
    const bool consistent = wait_for(
        [&] {
            stale = wrong_reads(reader, keys, latest);
            if (!first_pass) first_pass = stale;
            return stale == 0;
        },
        60s, 500ms);
    std::cout << "[join] first read pass after the ring was ideal: " << *first_pass
              << " keys not at their latest value\n";
    EXPECT_TRUE(consistent) << stale << " keys do not read back their latest value";
    std::cout << "[join] every key reads back its latest value; the read passes took "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - read_start)
                     .count()
              << " ms from when the ring was ideal\n";
    auto stats = cluster.info(5);
    ASSERT_TRUE(stats);
    EXPECT_GT(stats->repair_keys_pulled, 0u) << "the new process pulled nothing";

    // The processes that dropped out of a replica set dropped their copies (after the new
    // holders had them): exactly 3 copies of every key.
    const auto gc_start = std::chrono::steady_clock::now();
    EXPECT_TRUE(wait_exactly_replicated(cluster, {0, 1, 2, 3, 4, 5}, keys, 3, 90s));
    std::cout << "[join] exactly 3 copies of every key "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - gc_start)
                     .count()
              << " ms later\n";
}

TEST(DataIntegration, LeftoverCopiesAreDroppedWithoutBeingSentToHoldersThatHaveThem) {
    // A process holding copies of keys whose replica set it is not in (left from before a
    // join, say) drops them once the owner and its holders have them; when their digests
    // match ours nothing is sent. (Before, every dropped copy went to all R holders again:
    // most of a join's traffic on the old processes.)
    ClusterOptions options;
    options.extra_flags = {"--repair-interval", "50", "--repair-full-interval", "500"};
    Cluster cluster(options);
    ASSERT_NO_FATAL_FAILURE(start_ring(cluster, 4));
    std::vector<std::string> keys;
    Client client = client_of(cluster, 1);
    for (int k = 0; k < 800; ++k) {
        keys.push_back("left-" + std::to_string(k));
        ASSERT_TRUE(client.put(keys.back(), "v" + std::to_string(k)));
    }
    ASSERT_TRUE(wait_exactly_replicated(cluster, {0, 1, 2, 3}, keys, 3, 60s));

    // Copies, at the holders' versions, of the keys the target process does not hold. Each
    // key is missing from exactly one of the 4 processes, so the one missing the most lacks at
    // least 200 (how many each lacks depends on where the ports put its vnodes; process 0
    // alone lacked 0 of 800 in some layouts).
    std::vector<std::vector<net::SyncEntry>> dumps;
    for (std::size_t i = 0; i < 4; ++i) {
        auto entries = dump_of(cluster, i);
        ASSERT_TRUE(entries);
        dumps.push_back(std::move(*entries));
    }
    std::size_t target = 0;
    std::map<std::string, net::SyncEntry> leftover;
    for (std::size_t t = 0; t < 4; ++t) {
        std::set<std::string> held;
        for (const auto& e : dumps[t]) held.insert(e.key);
        std::map<std::string, net::SyncEntry> missing;
        for (std::size_t i = 0; i < 4; ++i) {
            if (i == t) continue;
            for (const auto& e : dumps[i]) {
                if (!held.count(e.key)) missing.emplace(e.key, e);
            }
        }
        if (missing.size() > leftover.size()) {
            target = t;
            leftover = std::move(missing);
        }
    }
    ASSERT_GE(leftover.size(), 200u);
    const auto sent = [&](const net::InfoReply& info) {
        std::uint64_t n = 0;
        for (const auto& v : info.vnodes) n += v.repair_keys_sent + v.handoff_keys_sent;
        return n;
    };
    auto before = cluster.info(target);
    ASSERT_TRUE(before);

    net::ReplicateBatchRequest inject;
    inject.request_id = 7;
    inject.purpose = static_cast<std::uint8_t>(net::SyncPurpose::repair);
    for (auto& [key, e] : leftover) inject.entries.push_back(e);
    auto conn = net::RequestClient::connect(cluster.address(target), 2s);
    ASSERT_TRUE(conn);
    auto frame = (*conn)->call(net::encode_admin(inject, nullptr), 5s);
    ASSERT_TRUE(frame);
    ASSERT_EQ(frame->type, net::admin_type<net::ReplicateBatchReply>());
    auto applied = net::decode_admin<net::ReplicateBatchReply>(frame->payload);
    ASSERT_TRUE(applied);
    ASSERT_EQ(applied->applied, leftover.size());

    // Dropped again (within a few full-interval rounds of each vnode), and sent nowhere.
    EXPECT_TRUE(wait_exactly_replicated(cluster, {0, 1, 2, 3}, keys, 3, 60s));
    auto after = cluster.info(target);
    ASSERT_TRUE(after);
    EXPECT_GE(after->copies_dropped - before->copies_dropped, leftover.size());
    EXPECT_EQ(sent(*after), sent(*before));
    std::cout << "[leftover] process " << target << " dropped "
              << after->copies_dropped - before->copies_dropped << " copies of " << leftover.size()
              << " injected, sent " << sent(*after) - sent(*before) << " entries\n";
}

}  // namespace
}  // namespace chordkv::testing

namespace chordkv::testing {
namespace {

// Every key reads back as expected (nullopt: deleted) through `client`; returns the wrong ones.
std::size_t wrong_reads(Client& client, const std::vector<std::string>& keys,
                        const std::vector<std::optional<std::string>>& expected) {
    std::size_t wrong = 0;
    for (std::size_t k = 0; k < keys.size(); ++k) {
        auto got = client.get(keys[k]);
        if (!got) {
            ++wrong;
        } else if (expected[k] ? (!got->found || got->value != *expected[k]) : got->found) {
            ++wrong;
        }
    }
    return wrong;
}

TEST(DataIntegration, GracefulLeaveMovesOnlyTheLeaversArcsAndLosesNothing) {
    ClusterOptions options;
    options.vnodes = 32;
    options.extra_flags = {"--repair-interval", "100"};
    Cluster cluster(options);
    ASSERT_NO_FATAL_FAILURE(start_ring(cluster, 6));
    std::string problem;

    constexpr int kKeys = 4'000;
    std::vector<std::string> keys;
    std::vector<std::optional<std::string>> expected;
    Client client = client_of(cluster, 0);
    for (int k = 0; k < kKeys; ++k) {
        keys.push_back("l-" + std::to_string(k));
        expected.emplace_back("v" + std::to_string(k) + std::string("\0\n", 2));
        ASSERT_TRUE(client.put(keys.back(), *expected.back()));
    }
    for (std::size_t k = 0; k < keys.size(); k += 10) {
        ASSERT_TRUE(client.del(keys[k]));
        expected[k].reset();
    }
    std::vector<std::size_t> live = {0, 1, 2, 3, 4, 5};
    ASSERT_TRUE(wait_for([&] { return under_replicated(cluster, live, keys, 3) == 0; }, 30s));

    // Two leaves: SIGTERM of process 2, then `chordctl leave` to process 4.
    for (std::size_t leaver : {std::size_t{2}, std::size_t{4}}) {
        SCOPED_TRACE("leaver " + std::to_string(leaver));
        const auto before = owners_of(cluster, live, keys);
        ASSERT_EQ(before.size(), keys.size());
        const auto started = std::chrono::steady_clock::now();
        if (leaver == 2) {
            auto status = cluster.terminate(leaver, 60s);
            ASSERT_TRUE(status.has_value()) << "no exit after SIGTERM\n" << cluster.log(leaver);
            EXPECT_EQ(*status, 0) << cluster.log(leaver);
        } else {
            auto left = run_command(
                {chordctl_path(), "--node", cluster.address(leaver), "--json", "leave"}, 90s);
            ASSERT_EQ(left.exit_code, 0) << left.out << cluster.log(leaver);
            EXPECT_NE(left.out.find("\"keys_handed_off\":"), std::string::npos) << left.out;
            EXPECT_EQ(left.out.find("\"keys_handed_off\":0}"), std::string::npos) << left.out;
            ASSERT_TRUE(wait_for([&] { return !cluster.running(leaver); }, 30s))
                << "still running after LeaveReply\n"
                << cluster.log(leaver);
        }
        std::cout << "[leave] process " << leaver << " handed off and exited in "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - started)
                         .count()
                  << " ms\n";
        live.erase(std::find(live.begin(), live.end(), leaver));
        ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 15s))
            << problem;

        // Ownership moved only from the leaver, and all of its keys moved.
        const auto after = owners_of(cluster, live, keys);
        ASSERT_EQ(after.size(), keys.size());
        std::size_t moved = 0;
        for (std::size_t k = 0; k < keys.size(); ++k) {
            if (before[k] == static_cast<int>(leaver)) {
                ++moved;
                EXPECT_NE(after[k], static_cast<int>(leaver));
            } else {
                ASSERT_EQ(after[k], before[k]) << keys[k] << " changed owner between stayers";
            }
        }
        std::cout << "[leave] " << moved << " keys changed owner, all from process " << leaver
                  << "\n";
        EXPECT_GT(moved, 0u);

        // Every key reads back at once (values and deletes), through every stayer.
        for (std::size_t via : live) {
            Client reader = client_of(cluster, via);
            EXPECT_EQ(wrong_reads(reader, keys, expected), 0u) << "through process " << via;
        }
        // The new owners received the arcs by handoff, and every key has 3 copies again.
        std::uint64_t received = 0;
        for (std::size_t i : live) {
            auto info = cluster.info(i);
            ASSERT_TRUE(info);
            for (const auto& v : info->vnodes) received += v.handoff_keys_received;
        }
        EXPECT_GT(received, 0u);
        const auto repair_start = std::chrono::steady_clock::now();
        ASSERT_TRUE(wait_exactly_replicated(cluster, live, keys, 3, 60s));
        std::cout << "[leave] exactly 3 copies of every key "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - repair_start)
                         .count()
                  << " ms after the ring was ideal\n";
    }
}

}  // namespace
}  // namespace chordkv::testing

namespace chordkv::testing {
namespace {

TEST(DataIntegration, TombstonesArePurgedAfterTheGracePeriodAndDeletesStayDeleted) {
    ClusterOptions options;
    options.extra_flags = {"--tombstone-grace", "1500", "--purge-interval", "300"};
    Cluster cluster(options);
    ASSERT_NO_FATAL_FAILURE(start_ring(cluster, 3));
    Client client = client_of(cluster, 0);
    std::vector<std::string> keys;
    std::vector<std::optional<std::string>> expected;
    for (int k = 0; k < 300; ++k) {
        keys.push_back("t-" + std::to_string(k));
        expected.emplace_back("v" + std::to_string(k));
        ASSERT_TRUE(client.put(keys.back(), *expected.back()));
    }
    for (std::size_t k = 0; k < keys.size(); k += 3) {
        ASSERT_TRUE(client.del(keys[k]));
        expected[k].reset();
    }
    // Every process holds its share of the 100 tombstones at first (3 copies of each)...
    auto tombstones = [&] {
        std::uint64_t total = 0;
        for (std::size_t i = 0; i < 3; ++i) {
            auto info = cluster.info(i, /*keys=*/true);
            if (!info) return std::uint64_t{1'000'000};
            for (const auto& v : info->vnodes) total += v.tombstones;
        }
        return total;
    };
    EXPECT_GT(tombstones(), 0u);
    // ...and none once the grace period is over; the deleted keys stay deleted.
    ASSERT_TRUE(wait_for([&] { return tombstones() == 0; }, 20s)) << tombstones();
    std::uint64_t purged = 0;
    for (std::size_t i = 0; i < 3; ++i) {
        auto info = cluster.info(i);
        ASSERT_TRUE(info);
        purged += info->tombstones_purged;
    }
    // 100 deletes x 3 copies; more when repair copied a tombstone back to a replica that had
    // purged it first (it is purged again: deletes are never undone by it).
    EXPECT_GE(purged, 300u);
    EXPECT_EQ(wrong_reads(client, keys, expected), 0u);
}

}  // namespace
}  // namespace chordkv::testing

namespace chordkv::testing {
namespace {

// A data dir written by one cluster is refused by a process of another (another cluster key,
// or none): chordd exits 3 saying so, and the data is untouched for its own cluster.
TEST(DataIntegration, ADataDirFromAnotherClusterIsRefusedAndKept) {
    const std::string dir =
        ::testing::TempDir() + "/chordkv-other-cluster-" + std::to_string(std::random_device{}());
    std::filesystem::create_directories(dir);
    const auto write_key = [&](const std::string& name, const std::string& bytes) {
        std::ofstream(dir + "/" + name) << bytes;
        return dir + "/" + name;
    };
    const std::string key_a = write_key("a.key", "cluster-a-secret-0123456789abcdef");
    const std::string key_b = write_key("b.key", "cluster-b-secret-0123456789abcdef");

    ClusterOptions options;
    options.key_file = key_a;
    Cluster cluster(options);
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    {
        ClientOptions o;
        o.seeds = {cluster.address(0)};
        o.cluster_key = "cluster-a-secret-0123456789abcdef";
        Client client(o);
        ASSERT_TRUE(client.put("kept", "across the refusals"));
    }
    ASSERT_EQ(cluster.terminate(0, 30s), std::optional<int>(0)) << cluster.log(0);

    for (const std::vector<std::string>& key_flags :
         {std::vector<std::string>{}, std::vector<std::string>{"--cluster-key-file", key_b}}) {
        std::vector<std::string> argv = {chordd_path(), "--listen",
                                         "127.0.0.1:" + std::to_string(free_port()), "--data-dir",
                                         cluster.data_dir(0)};
        argv.insert(argv.end(), key_flags.begin(), key_flags.end());
        auto run = run_command(argv, 20s);
        EXPECT_EQ(run.exit_code, 3) << run.out;
        EXPECT_NE(run.out.find("belongs to another cluster"), std::string::npos) << run.out;
    }

    // Its own cluster's process still serves the key.
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    ClientOptions o;
    o.seeds = {cluster.address(0)};
    o.cluster_key = "cluster-a-secret-0123456789abcdef";
    Client client(o);
    auto got = client.get("kept");
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_TRUE(got->found && got->value == "across the refusals");
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace chordkv::testing
