#include "chord/rpc_tracker.hpp"

#include <gtest/gtest.h>

namespace chordkv::chord {
namespace {

using namespace std::chrono_literals;
using Time = RpcTracker::Time;

class RpcTrackerTest : public ::testing::Test {
protected:
    Envelope request_to(const std::string& address, std::uint64_t id) {
        Envelope e;
        e.from = Peer{NodeId::from_uint64(1), "me"};
        e.to_address = address;
        e.to_id = NodeId::from_uint64(id);
        e.body = Ping{};
        return e;
    }
    Envelope reply_from(const Envelope& request) {
        Envelope r;
        r.from = Peer{*request.to_id, request.to_address};
        r.to_address = "me";
        r.rpc_id = request.rpc_id;
        r.reply = true;
        r.body = Pong{};
        return r;
    }
    std::mt19937_64 rng_{1};
    RpcTracker tracker_{2, 0.0, rng_};
    Time t0_{};
};

TEST_F(RpcTrackerTest, ReplyCompletesExactlyOnce) {
    int calls = 0;
    auto sent = tracker_.start(t0_, request_to("a", 2), {100ms, 3}, [&](Time, Result<Envelope> r) {
        ++calls;
        EXPECT_TRUE(r);
    });
    ASSERT_TRUE(sent);
    EXPECT_NE(sent->rpc_id, 0u);
    EXPECT_EQ(tracker_.inflight(), 1u);
    const Envelope reply = reply_from(*sent);
    EXPECT_TRUE(tracker_.complete(t0_ + 10ms, reply));
    EXPECT_FALSE(tracker_.complete(t0_ + 11ms, reply));  // duplicate
    std::vector<Envelope> resend;
    tracker_.expire(t0_ + 10s, resend);
    EXPECT_TRUE(resend.empty());
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(tracker_.inflight(), 0u);
    EXPECT_EQ(tracker_.next_deadline(), Time::max());
}

TEST_F(RpcTrackerTest, RetriesWithBackoffThenTimesOutOnce) {
    std::vector<std::error_code> results;
    auto sent = tracker_.start(t0_, request_to("a", 2), {100ms, 3},
                               [&](Time, Result<Envelope> r) { results.push_back(r.code()); });
    ASSERT_TRUE(sent);
    EXPECT_EQ(tracker_.next_deadline(), t0_ + 100ms);
    std::vector<Envelope> resend;
    tracker_.expire(t0_ + 99ms, resend);
    EXPECT_TRUE(resend.empty());
    tracker_.expire(t0_ + 100ms, resend);  // attempt 2, waits 200 ms
    ASSERT_EQ(resend.size(), 1u);
    EXPECT_EQ(resend[0].rpc_id, sent->rpc_id);
    EXPECT_EQ(tracker_.next_deadline(), t0_ + 300ms);
    tracker_.expire(t0_ + 300ms, resend);  // attempt 3, waits 400 ms
    EXPECT_EQ(resend.size(), 2u);
    EXPECT_EQ(tracker_.next_deadline(), t0_ + 700ms);
    EXPECT_TRUE(results.empty());
    tracker_.expire(t0_ + 700ms, resend);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0], Errc::timed_out);
    EXPECT_EQ(tracker_.timeouts(), 1u);
    EXPECT_EQ(tracker_.retries(), 2u);
    // A reply after the timeout is late and ignored.
    EXPECT_FALSE(tracker_.complete(t0_ + 800ms, reply_from(*sent)));
    EXPECT_EQ(results.size(), 1u);
}

TEST_F(RpcTrackerTest, RejectsRepliesFromAnotherPeer) {
    bool done = false;
    auto sent = tracker_.start(t0_, request_to("a", 2), {100ms, 1},
                               [&](Time, Result<Envelope>) { done = true; });
    ASSERT_TRUE(sent);
    Envelope forged = reply_from(*sent);
    forged.from.address = "mallory";
    EXPECT_FALSE(tracker_.complete(t0_, forged));
    forged = reply_from(*sent);
    forged.from.id = NodeId::from_uint64(99);
    EXPECT_FALSE(tracker_.complete(t0_, forged));
    EXPECT_FALSE(done);
    EXPECT_TRUE(tracker_.complete(t0_, reply_from(*sent)));
    EXPECT_TRUE(done);
}

TEST_F(RpcTrackerTest, BoundedInFlightAndCancelAll) {
    std::vector<std::error_code> results;
    auto cb = [&](Time, Result<Envelope> r) { results.push_back(r.code()); };
    ASSERT_TRUE(tracker_.start(t0_, request_to("a", 2), {100ms, 1}, cb));
    ASSERT_TRUE(tracker_.start(t0_, request_to("b", 3), {100ms, 1}, cb));
    auto third = tracker_.start(t0_, request_to("c", 4), {100ms, 1}, cb);
    EXPECT_EQ(third.code(), Errc::busy);
    tracker_.cancel_all(t0_, Errc::shutting_down);
    ASSERT_EQ(results.size(), 2u);
    EXPECT_EQ(results[0], Errc::shutting_down);
    EXPECT_EQ(results[1], Errc::shutting_down);
    EXPECT_EQ(tracker_.inflight(), 0u);
}

TEST_F(RpcTrackerTest, CallbackMayStartNewRpcs) {
    int chained = 0;
    std::function<void(Time, Result<Envelope>)> again = [&](Time now, Result<Envelope>) {
        if (++chained < 3) {
            ASSERT_TRUE(tracker_.start(now, request_to("a", 2), {100ms, 1}, again));
        }
    };
    ASSERT_TRUE(tracker_.start(t0_, request_to("a", 2), {100ms, 1}, again));
    std::vector<Envelope> resend;
    for (int i = 1; i <= 5; ++i) tracker_.expire(t0_ + i * 100ms, resend);
    EXPECT_EQ(chained, 3);
    EXPECT_EQ(tracker_.inflight(), 0u);
}

}  // namespace
}  // namespace chordkv::chord
