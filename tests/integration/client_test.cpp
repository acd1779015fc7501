// The smart chordkv::Client against real processes: one ring walk on first use, then every
// operation straight to its key's owner (no redirects); after a join the view goes stale, is
// walked again, and the redirects stop.
#include "node/client.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "net/admin_codec.hpp"
#include "net/request_client.hpp"

namespace chordkv::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kKeys = 300;

std::string key_of(int k) {
    return "smart-" + std::to_string(k);
}

// The owner of `key` as the ring itself answers it (LookupRequest to process `via`).
Result<std::string> lookup_owner(const Cluster& cluster, std::size_t via, const std::string& key) {
    using R = Result<std::string>;
    auto c = net::RequestClient::connect(cluster.address(via), 5s);
    if (!c) return R(c.error());
    auto frame = (*c)->call(net::encode_admin(net::LookupRequest{1, key}, nullptr), 5s);
    if (!frame) return R(frame.error());
    if (frame->type != net::admin_type<net::LookupReply>()) {
        return R(Errc::malformed_message, "answered with type " + std::to_string(frame->type));
    }
    auto reply = net::decode_admin<net::LookupReply>(frame->payload);
    if (!reply) return R(reply.error());
    return reply->owner.address;
}

class ClientIntegration : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(cluster_.start(0, -1)) << cluster_.log(0);
        for (std::size_t i = 1; i < 3; ++i) {
            ASSERT_TRUE(cluster_.start(i, static_cast<int>(i - 1))) << cluster_.log(i);
        }
        wait_ideal();
    }

    void wait_ideal() {
        std::string problem;
        ASSERT_TRUE(
            wait_for([&] { return (problem = cluster_.ideal_ring_problem()).empty(); }, 20s))
            << problem;
    }

    ClientOptions options() const {
        ClientOptions o;
        o.seeds = {cluster_.address(0)};
        o.timeout = 5s;
        return o;
    }

    Cluster cluster_{{}};
};

TEST_F(ClientIntegration, StraightToTheOwnerWithoutRedirects) {
    Client client(options());
    // The first request walks the ring: every vnode of every process is in the view.
    ASSERT_TRUE(client.put(key_of(0), "v0"));
    auto stats = client.stats();
    EXPECT_EQ(stats.ring_walks, 1u);
    EXPECT_EQ(stats.view_processes, 3u);
    EXPECT_EQ(stats.view_vnodes, 3u * 8u);
    for (int k = 1; k < kKeys; ++k) ASSERT_TRUE(client.put(key_of(k), "v" + std::to_string(k)));

    // N gets: one request each, answered by the owner, zero redirects.
    const auto before = client.stats();
    for (int k = 0; k < kKeys; ++k) {
        auto got = client.get(key_of(k));
        ASSERT_TRUE(got) << got.error().message();
        EXPECT_TRUE(got->found && got->value == "v" + std::to_string(k)) << key_of(k);
    }
    const auto after = client.stats();
    EXPECT_EQ(after.redirects_followed, before.redirects_followed);
    EXPECT_EQ(client.redirects_followed(), before.redirects_followed);
    EXPECT_EQ(after.requests - before.requests, static_cast<std::uint64_t>(kKeys));
    EXPECT_EQ(after.seed_fallbacks, before.seed_fallbacks);
    EXPECT_EQ(after.ring_walks, 1u);

    // Each key's request goes to its owner's address, as the ring's own lookup names it.
    for (int k = 0; k < kKeys; k += 15) {
        auto owner = lookup_owner(cluster_, static_cast<std::size_t>(k) % 3, key_of(k));
        ASSERT_TRUE(owner) << owner.error().message();
        EXPECT_EQ(client.route(key_of(k)), *owner) << key_of(k);
    }

    // For comparison, a client that always starts at the seed follows a redirect for every key
    // the seed does not own (about two in three).
    ClientOptions plain = options();
    plain.smart_routing = false;
    Client seed_only(plain);
    for (int k = 0; k < kKeys; ++k) ASSERT_TRUE(seed_only.get(key_of(k)));
    EXPECT_GT(seed_only.redirects_followed(), static_cast<std::uint64_t>(kKeys / 3));
    EXPECT_EQ(seed_only.stats().ring_walks, 0u);
}

// A client that polls for its replies (ClientOptions::busy_poll) reads and writes like one
// that sleeps, and still gives up at its timeout when a node does not answer.
TEST_F(ClientIntegration, APollingClientServesAndTimesOutLikeASleepingOne) {
    ClientOptions o = options();
    o.busy_poll = std::chrono::microseconds(200);
    Client client(o);
    for (int k = 0; k < kKeys; ++k) ASSERT_TRUE(client.put(key_of(k), "p" + std::to_string(k)));
    ASSERT_TRUE(client.del(key_of(0)));
    for (int k = 0; k < kKeys; ++k) {
        auto got = client.get(key_of(k));
        ASSERT_TRUE(got) << got.error().message();
        if (k == 0) {
            EXPECT_FALSE(got->found);
        } else {
            EXPECT_TRUE(got->found && got->value == "p" + std::to_string(k)) << key_of(k);
        }
    }
    // A node that accepts connections but never answers: the call ends at the timeout.
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor silent(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    auto c = net::RequestClient::connect(
        "127.0.0.1:" + std::to_string(silent.local_endpoint().port()), 2s);
    ASSERT_TRUE(c) << c.error().message();
    (*c)->set_busy_poll(std::chrono::microseconds(200));
    const auto start = std::chrono::steady_clock::now();
    auto frame = (*c)->call(net::encode_admin(net::InfoRequest{1, false}, nullptr), 300ms);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(frame);
    EXPECT_EQ(frame.code(), Errc::timed_out) << frame.error().message();
    EXPECT_GE(took, 250ms);  // the call rounds its deadline to milliseconds
    EXPECT_LT(took, 5s);
}

// A write that reaches its owner after the deadline its client set (a link cut, TCP
// retransmitting long after the client gave up) is refused and not applied: applying it would
// stamp it newer than whatever the client wrote since.
TEST_F(ClientIntegration, AWriteThatArrivesAfterItsDeadlineIsRefused) {
    Client client(options());
    const std::string key = key_of(7);
    ASSERT_TRUE(client.put(key, "newer"));
    auto owner = lookup_owner(cluster_, 0, key);
    ASSERT_TRUE(owner) << owner.error().message();

    auto c = net::RequestClient::connect(*owner, 5s);
    ASSERT_TRUE(c) << c.error().message();
    auto send = [&](std::uint64_t id, std::uint64_t deadline_ms) {
        return (*c)->call(
            net::encode_admin(net::PutRequest{id, key, "late", false, deadline_ms}, nullptr), 5s);
    };
    auto late = send(1, net::deadline_after(-1500ms));
    ASSERT_TRUE(late) << late.error().message();
    ASSERT_EQ(late->type, net::admin_type<net::ErrorReply>());
    auto error = net::decode_admin<net::ErrorReply>(late->payload);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->code, static_cast<int>(Errc::timed_out)) << error->message;
    EXPECT_NE(error->message.find("deadline"), std::string::npos) << error->message;

    auto got = client.get(key);
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_EQ(got->value, "newer");  // not applied

    std::size_t expired = 0;
    for (std::size_t i = 0; i < 3; ++i) {
        auto info = cluster_.info(i);
        ASSERT_TRUE(info) << info.error().message();
        expired += info->expired_writes;
    }
    EXPECT_EQ(expired, 1u);

    // The same write within its deadline, and one without any (0), are applied.
    auto in_time = send(2, net::deadline_after(5s));
    ASSERT_TRUE(in_time);
    EXPECT_EQ(in_time->type, net::admin_type<net::PutReply>());
    got = client.get(key);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->value, "late");
    auto no_deadline = send(3, 0);
    ASSERT_TRUE(no_deadline);
    EXPECT_EQ(no_deadline->type, net::admin_type<net::PutReply>());
}

TEST_F(ClientIntegration, AJoinMakesTheViewStaleAndItIsWalkedAgain) {
    Client client(options());
    for (int k = 0; k < kKeys; ++k) ASSERT_TRUE(client.put(key_of(k), "v" + std::to_string(k)));
    ASSERT_EQ(client.stats().view_processes, 3u);

    ASSERT_TRUE(cluster_.start(3, 1)) << cluster_.log(3);
    wait_ideal();

    // Keys of the arcs the new process took are redirected by their old owners, which the
    // view named: the view goes stale and is walked again (rate-limited); then no redirects.
    bool settled = false;
    for (int pass = 0; pass < 20 && !settled; ++pass) {
        const auto before = client.redirects_followed();
        for (int k = 0; k < kKeys; ++k) {
            auto got = client.get(key_of(k));
            ASSERT_TRUE(got) << key_of(k) << ": " << got.error().message();
        }
        settled = client.redirects_followed() == before && client.stats().view_processes == 4u;
        if (!settled) std::this_thread::sleep_for(client.ring_view().options().rewalk_interval_min);
    }
    EXPECT_TRUE(settled) << "redirects did not stop after the join";
    EXPECT_GE(client.stats().ring_walks, 2u);
    EXPECT_EQ(client.stats().view_vnodes, 4u * 8u);
    for (int k = 0; k < kKeys; k += 15) {
        auto owner = lookup_owner(cluster_, 3, key_of(k));
        ASSERT_TRUE(owner) << owner.error().message();
        EXPECT_EQ(client.route(key_of(k)), *owner) << key_of(k);
    }
}

TEST_F(ClientIntegration, AnOwnerThatDiedIsForgottenAndTheSeedsServe) {
    ClientOptions o = options();
    o.seeds = {cluster_.address(0), cluster_.address(1)};
    Client client(o);
    for (int k = 0; k < kKeys; ++k) ASSERT_TRUE(client.put(key_of(k), "v" + std::to_string(k)));
    cluster_.kill9(2);
    wait_ideal();
    int served = 0;
    for (int k = 0; k < kKeys; ++k) {
        auto got = client.get(key_of(k));
        ASSERT_TRUE(got) << key_of(k) << ": " << got.error().message();
        if (got->found) ++served;
    }
    EXPECT_EQ(served, kKeys);  // R = 3: every key has copies on the two live processes
    EXPECT_GE(client.stats().seed_fallbacks, 1u);
    for (int k = 0; k < kKeys; ++k) EXPECT_NE(client.route(key_of(k)), cluster_.address(2));
}

}  // namespace
}  // namespace chordkv::testing
