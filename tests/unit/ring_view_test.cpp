// node/ring_view: the ring walk (seeds in turn, then every process the answers name, bounded),
// owner routing as successor(k), learning from redirects, staleness and the re-walk rate limit.
#include "node/ring_view.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "chord/protocol.hpp"

namespace chordkv {
namespace {

using chord::NodeId;
using chord::Peer;
using Clock = RingView::Clock;
using namespace std::chrono_literals;

NodeId id(std::uint64_t v) {
    return NodeId::from_uint64(v);
}

// A ring of processes, each with its vnode ids; answers InfoRequests as chordd would, with
// successor lists of length `r` over the whole ring.
class FakeRing {
public:
    FakeRing(std::map<std::string, std::vector<std::uint64_t>> processes, std::size_t r)
        : processes_(std::move(processes)), r_(r) {
        for (const auto& [address, ids] : processes_) {
            for (auto v : ids) ring_[id(v)] = address;
        }
    }

    net::InfoReply info(const std::string& address) const {
        net::InfoReply reply;
        reply.address = address;
        for (auto v : processes_.at(address)) {
            net::VnodeInfo vnode;
            vnode.id = id(v);
            vnode.state = static_cast<std::uint8_t>(chord::MemberState::member);
            auto it = ring_.find(vnode.id);
            for (std::size_t i = 0; i < r_; ++i) {
                if (++it == ring_.end()) it = ring_.begin();
                vnode.successors.push_back(Peer{it->first, it->second});
            }
            reply.vnodes.push_back(vnode);
        }
        return reply;
    }
    bool has(const std::string& address) const { return processes_.count(address) > 0; }
    const std::map<NodeId, std::string>& ring() const { return ring_; }

private:
    std::map<std::string, std::vector<std::uint64_t>> processes_;
    std::size_t r_;
    std::map<NodeId, std::string> ring_;
};

// Drives a walk to its end against `ring`; `down` addresses fail. Returns the addresses asked.
std::vector<std::string> run(RingWalk& walk, const FakeRing& ring,
                             const std::vector<std::string>& down, Clock::time_point now) {
    std::vector<std::string> asked;
    while (auto address = walk.next(now)) {
        asked.push_back(*address);
        const bool fails =
            !ring.has(*address) || std::find(down.begin(), down.end(), *address) != down.end();
        if (fails) {
            walk.on_failure(*address);
        } else {
            walk.on_reply(*address, ring.info(*address));
        }
    }
    EXPECT_TRUE(walk.done(now));
    return asked;
}

class RingViewTest : public ::testing::Test {
protected:
    // Three processes, interleaved vnodes; successor lists of 2 so that one answer does not
    // name every process.
    FakeRing ring_{{{"a:1", {10, 40, 70}}, {"b:1", {20, 50, 80}}, {"c:1", {30, 60, 90}}}, 2};
    Clock::time_point now_ = Clock::time_point() + 1h;
};

TEST_F(RingViewTest, WalkFromOneSeedLearnsEveryVnode) {
    RingView view;
    ASSERT_TRUE(view.walk_due(now_));
    RingWalk walk = view.start_walk({"a:1"}, now_);
    const auto asked = run(walk, ring_, {}, now_);
    EXPECT_EQ(asked, (std::vector<std::string>{"a:1", "b:1", "c:1"}));
    view.finish_walk(walk);
    EXPECT_EQ(view.vnodes(), ring_.ring());
    EXPECT_EQ(view.processes(), 3u);
    EXPECT_FALSE(view.walk_due(now_ + 1h));  // fresh and complete: no walk until it goes stale
}

TEST_F(RingViewTest, OwnerIsTheSuccessorOfTheKeyId) {
    RingView view;
    RingWalk walk = view.start_walk({"b:1"}, now_);
    run(walk, ring_, {}, now_);
    view.finish_walk(walk);
    EXPECT_EQ(*view.owner(id(10)), "a:1");  // a vnode owns its own id
    EXPECT_EQ(*view.owner(id(11)), "b:1");
    EXPECT_EQ(*view.owner(id(59)), "c:1");
    EXPECT_EQ(*view.owner(id(91)), "a:1");  // past the last vnode: wraps to the first
    EXPECT_EQ(*view.owner(id(0)), "a:1");
    EXPECT_EQ(RingView().owner(id(5)), nullptr);
}

TEST_F(RingViewTest, SeedsAreTriedInTurnUntilOneAnswers) {
    RingWalk walk({"gone:1", "c:1", "a:1"}, 16, now_ + 5s);
    auto first = walk.next(now_);
    ASSERT_EQ(first, "gone:1");
    EXPECT_EQ(walk.next(now_), std::nullopt);  // one seed at a time
    EXPECT_FALSE(walk.done(now_));
    walk.on_failure(*first);
    const auto asked = run(walk, ring_, {}, now_);
    // c:1 answers and names a:1 and b:1; the seed a:1 is not asked twice.
    EXPECT_EQ(asked, (std::vector<std::string>{"c:1", "a:1", "b:1"}));
    EXPECT_EQ(walk.vnodes(), ring_.ring());
}

TEST_F(RingViewTest, AProcessThatDoesNotAnswerIsLeftOut) {
    RingWalk walk({"a:1"}, 16, now_ + 5s);
    run(walk, ring_, {"b:1"}, now_);
    auto vnodes = walk.vnodes();
    EXPECT_EQ(vnodes.size(), 6u);
    for (const auto& [vnode, address] : vnodes) EXPECT_NE(address, "b:1");
}

TEST_F(RingViewTest, TheWalkIsBoundedInProcessesAndTime) {
    RingWalk small({"a:1"}, 1, now_ + 5s);
    EXPECT_EQ(run(small, ring_, {}, now_).size(), 1u);
    // What a:1's successor lists name is kept as hearsay.
    EXPECT_EQ(small.answered(), 1u);
    EXPECT_GT(small.vnodes().size(), 3u);

    RingWalk late({"a:1"}, 16, now_ + 5s);
    EXPECT_EQ(late.next(now_ + 6s), std::nullopt);
    EXPECT_TRUE(late.done(now_ + 6s));
    EXPECT_TRUE(late.vnodes().empty());
}

TEST_F(RingViewTest, ARedirectFromTheBelievedOwnerMakesTheViewStale) {
    RingView view(RingViewOptions{});
    RingWalk walk = view.start_walk({"a:1"}, now_);
    run(walk, ring_, {}, now_);
    view.finish_walk(walk);

    // A redirect from a process the view did not name as the owner: learned, not stale.
    view.on_redirect("a:1", id(25), id(30), "c:1");
    EXPECT_FALSE(view.stale());

    // d:1 joined with vnode 35: a:1 (the owner of key 33 in the view) redirects there.
    view.on_redirect("a:1", id(33), id(35), "d:1");
    EXPECT_TRUE(view.stale());
    EXPECT_EQ(*view.owner(id(33)), "d:1");
    EXPECT_EQ(*view.owner(id(36)), "a:1");
    EXPECT_EQ(view.stats().stale_redirects, 1u);
    EXPECT_EQ(view.stats().vnodes_learned, 1u);

    // Re-walked at most once per rewalk_interval_min.
    EXPECT_FALSE(view.walk_due(now_ + 500ms));
    ASSERT_TRUE(view.walk_due(now_ + 1s));
    RingWalk again = view.start_walk({"a:1"}, now_ + 1s);
    EXPECT_FALSE(view.walk_due(now_ + 5s));  // a walk is running
    run(again, ring_, {}, now_ + 1s);
    view.finish_walk(again);
    EXPECT_FALSE(view.stale());
    EXPECT_EQ(view.vnodes(), ring_.ring());  // the walk's picture replaces the learned one
}

TEST_F(RingViewTest, AnUnreachableOwnerIsForgotten) {
    RingView view;
    RingWalk walk = view.start_walk({"a:1"}, now_);
    run(walk, ring_, {}, now_);
    view.finish_walk(walk);
    view.on_unreachable("b:1");
    EXPECT_TRUE(view.stale());
    EXPECT_EQ(view.size(), 6u);
    EXPECT_EQ(*view.owner(id(15)), "c:1");  // b's arc falls to its successor

    // A walk that learns nothing keeps the view; the next one may start after the interval.
    RingWalk dead = view.start_walk({"gone:1"}, now_ + 2s);
    // The processes in the view are seeds too, after the given ones.
    EXPECT_EQ(dead.next(now_ + 2s), "gone:1");
    dead.on_failure("gone:1");
    EXPECT_TRUE(dead.next(now_ + 2s).has_value());
}

TEST_F(RingViewTest, AFullViewLearnsNoMoreVnodes) {
    RingViewOptions options;
    options.vnodes_max = 9;
    RingView view(options);
    RingWalk walk = view.start_walk({"a:1"}, now_);
    run(walk, ring_, {}, now_);
    view.finish_walk(walk);
    view.on_redirect("x:1", id(1), id(5), "d:1");
    EXPECT_EQ(view.size(), 9u);
    view.on_redirect("x:1", id(1), id(10), "d:1");  // a known vnode that moved is updated
    EXPECT_EQ(*view.owner(id(10)), "d:1");
}

}  // namespace
}  // namespace chordkv
