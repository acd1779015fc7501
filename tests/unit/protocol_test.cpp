// Protocol driven by hand: a few vnodes on a lossless network where every message is delivered
// in order, and time moves only when the test advances it. The simulator (tests/sim) does the
// same at scale with latency, loss and failures.
#include "chord/protocol.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>

namespace chordkv::chord {
namespace {

using namespace std::chrono_literals;

class ProtocolTest : public ::testing::Test {
protected:
    Protocol& add(std::uint64_t id) {
        const std::string address = "p" + std::to_string(id);
        auto p = std::make_unique<Protocol>(Peer{NodeId::from_uint64(id), address},
                                            ProtocolOptions{}, rng_);
        auto& ref = *p;
        nodes_[address] = std::move(p);
        return ref;
    }
    void flush() {
        std::deque<Envelope> queue;
        for (int guard = 0; guard < 100000; ++guard) {
            for (auto& [address, p] : nodes_) {
                for (auto& e : p->take_outbox()) queue.push_back(std::move(e));
            }
            if (queue.empty()) return;
            Envelope e = std::move(queue.front());
            queue.pop_front();
            auto it = nodes_.find(e.to_address);
            if (it != nodes_.end() && !crashed(e.to_address)) it->second->handle(now_, e);
        }
        FAIL() << "messages never quiesced";
    }
    bool crashed(const std::string& address) const {
        return std::find(crashed_.begin(), crashed_.end(), address) != crashed_.end();
    }
    // Advances time in small steps, delivering messages and running timers.
    void run_for(Duration d) {
        const Time end = now_ + d;
        while (now_ < end) {
            now_ += 10ms;
            for (auto& [address, p] : nodes_) {
                if (!crashed(address) && p->next_deadline() <= now_) p->tick(now_);
            }
            flush();
        }
    }
    std::vector<NodeId> successor_ids(const std::string& address) {
        std::vector<NodeId> out;
        for (const auto& p : nodes_[address]->ring_state().successors) out.push_back(p.id);
        return out;
    }

    std::mt19937_64 rng_{42};
    Time now_{};
    std::map<std::string, std::unique_ptr<Protocol>> nodes_;
    std::vector<std::string> crashed_;
};

TEST_F(ProtocolTest, LoneVnodeOwnsEverything) {
    Protocol& a = add(100);
    a.create(now_);
    EXPECT_EQ(a.ring_state().state, MemberState::member);
    Result<LookupResult> result(Errc::timed_out);
    a.lookup(now_, NodeId::from_uint64(5), [&](Time, Result<LookupResult> r) { result = r; });
    ASSERT_TRUE(result);
    EXPECT_EQ(result->owner.id, NodeId::from_uint64(100));
    EXPECT_EQ(result->hops, 0);
    EXPECT_EQ(a.check_invariants(), "");
}

TEST_F(ProtocolTest, ThreeVnodesFormAnOrderedRing) {
    Protocol& a = add(100);
    Protocol& b = add(200);
    Protocol& c = add(300);
    a.create(now_);
    Status b_joined(Errc::timed_out), c_joined(Errc::timed_out);
    b.join(now_, "p100", [&](Time, Status s) { b_joined = s; });
    flush();
    ASSERT_TRUE(b_joined) << b_joined.error().message();
    c.join(now_, "p200", [&](Time, Status s) { c_joined = s; });
    flush();
    ASSERT_TRUE(c_joined) << c_joined.error().message();
    run_for(5s);

    const auto id = [](std::uint64_t v) { return NodeId::from_uint64(v); };
    EXPECT_EQ(successor_ids("p100"), (std::vector<NodeId>{id(200), id(300)}));
    EXPECT_EQ(successor_ids("p200"), (std::vector<NodeId>{id(300), id(100)}));
    EXPECT_EQ(successor_ids("p300"), (std::vector<NodeId>{id(100), id(200)}));
    EXPECT_EQ(a.ring_state().predecessor->id, id(300));
    EXPECT_EQ(b.ring_state().predecessor->id, id(100));
    EXPECT_EQ(c.ring_state().predecessor->id, id(200));
    for (auto& [address, p] : nodes_) EXPECT_EQ(p->check_invariants(), "") << address;

    // Lookups from every vnode agree with successor(target).
    const std::vector<std::pair<std::uint64_t, std::uint64_t>> cases = {
        {50, 100}, {100, 100}, {101, 200}, {250, 300}, {300, 300}, {301, 100}};
    for (auto& [address, p] : nodes_) {
        for (auto [target, owner] : cases) {
            Result<LookupResult> r(Errc::timed_out);
            p->lookup(now_, id(target), [&](Time, Result<LookupResult> x) { r = x; });
            flush();
            ASSERT_TRUE(r) << address << " target " << target;
            EXPECT_EQ(r->owner.id, id(owner)) << address << " target " << target;
            EXPECT_LE(r->hops, 2);
        }
    }
}

TEST_F(ProtocolTest, CrashedSuccessorIsSkippedAndPredecessorReplaced) {
    for (std::uint64_t v : {100, 200, 300, 400}) add(v);
    nodes_["p100"]->create(now_);
    for (std::uint64_t v : {200, 300, 400}) {
        nodes_["p" + std::to_string(v)]->join(now_, "p100");
        flush();
    }
    run_for(5s);
    crashed_.push_back("p200");
    run_for(10s);
    const auto id = [](std::uint64_t v) { return NodeId::from_uint64(v); };
    EXPECT_EQ(successor_ids("p100"), (std::vector<NodeId>{id(300), id(400)}));
    EXPECT_EQ(nodes_["p300"]->ring_state().predecessor->id, id(100));
}

TEST_F(ProtocolTest, GracefulLeaveClosesTheGap) {
    for (std::uint64_t v : {100, 200, 300}) add(v);
    nodes_["p100"]->create(now_);
    nodes_["p200"]->join(now_, "p100");
    flush();
    nodes_["p300"]->join(now_, "p100");
    flush();
    run_for(5s);
    Status left(Errc::timed_out);
    nodes_["p200"]->leave(now_, [&](Time, Status s) { left = s; });
    flush();
    ASSERT_TRUE(left) << left.error().message();
    EXPECT_EQ(nodes_["p200"]->ring_state().state, MemberState::left);
    // The neighbours close the gap at once, before any stabilize round.
    const auto id = [](std::uint64_t v) { return NodeId::from_uint64(v); };
    EXPECT_EQ(successor_ids("p100")[0], id(300));
    run_for(5s);
    EXPECT_EQ(successor_ids("p100"), (std::vector<NodeId>{id(300)}));
    EXPECT_EQ(nodes_["p300"]->ring_state().predecessor->id, id(100));
}

TEST_F(ProtocolTest, VnodesCreatedTogetherAreAnIdealRingAtOnce) {
    std::vector<Peer> members;
    for (std::uint64_t v : {500, 100, 300, 200, 400}) members.push_back(add(v).self());
    for (auto& [address, p] : nodes_) p->create(now_, members);
    const auto id = [](std::uint64_t v) { return NodeId::from_uint64(v); };
    // No message was needed: each vnode knows its neighbours already.
    EXPECT_EQ(successor_ids("p100"), (std::vector<NodeId>{id(200), id(300), id(400), id(500)}));
    EXPECT_EQ(successor_ids("p500"), (std::vector<NodeId>{id(100), id(200), id(300), id(400)}));
    EXPECT_EQ(nodes_["p100"]->ring_state().predecessor->id, id(500));
    EXPECT_EQ(nodes_["p300"]->ring_state().predecessor->id, id(200));
    for (auto& [address, p] : nodes_) EXPECT_EQ(p->check_invariants(), "") << address;
}

TEST_F(ProtocolTest, ConcurrentJoinsThroughOneVnodeConvergeWithinAStabilizeRound) {
    // 100 and 190 form a ring; 150..180 all join through 100 at the same moment, so every
    // lookup answers 190 and they all start with successor 190. Rectify's hints and the
    // backward walk must sort them out in one stabilize period, not one period per joiner.
    std::vector<Peer> members = {add(100).self(), add(190).self()};
    for (auto& [address, p] : nodes_) p->create(now_, members);
    for (std::uint64_t v : {150, 160, 170, 180}) add(v).join(now_, "p100");
    flush();
    const auto id = [](std::uint64_t v) { return NodeId::from_uint64(v); };
    for (std::uint64_t v : {150, 160, 170, 180}) {
        EXPECT_EQ(successor_ids("p" + std::to_string(v)).front(), id(v + 10 == 190 ? 190 : v + 10))
            << v << " after the joins' own messages";
    }
    run_for(ProtocolOptions{}.stabilize_interval * 3 / 2);
    EXPECT_EQ(successor_ids("p100").front(), id(150));
    EXPECT_EQ(nodes_["p190"]->ring_state().predecessor->id, id(180));
    EXPECT_EQ(nodes_["p150"]->ring_state().predecessor->id, id(100));
}

TEST_F(ProtocolTest, JoinThroughAnUnreachableAddressFails) {
    Protocol& a = add(100);
    Status joined;
    bool called = false;
    a.join(now_, "nowhere", [&](Time, Status s) {
        joined = s;
        called = true;
    });
    run_for(5s);
    ASSERT_TRUE(called);
    EXPECT_FALSE(joined);
    EXPECT_EQ(a.ring_state().state, MemberState::idle);
}

}  // namespace
}  // namespace chordkv::chord
