#include "chord/hash_ring.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

namespace chordkv::chord {
namespace {

std::string node_name(int i) {
    return "127.0.0.1:" + std::to_string(7400 + i);
}

std::vector<std::string> make_keys(int count) {
    std::vector<std::string> keys;
    keys.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) keys.push_back("user:" + std::to_string(i));
    return keys;
}

std::vector<std::string> owners(const HashRing& ring, const std::vector<std::string>& keys) {
    std::vector<std::string> out;
    out.reserve(keys.size());
    for (const auto& k : keys) out.push_back(*ring.owner(k));
    return out;
}

class HashRingTest : public ::testing::Test {
protected:
    void SetUp() override {
        for (int i = 0; i < 10; ++i) ASSERT_TRUE(ring_.add(node_name(i), 100));
        keys_ = make_keys(100'000);
    }
    HashRing ring_;
    std::vector<std::string> keys_;
};

TEST(HashRingErrors, EmptyRingDuplicateAndUnknown) {
    HashRing ring;
    EXPECT_EQ(ring.owner("k").code(), Errc::empty_ring);
    EXPECT_EQ(ring.preference_list("k", 3).code(), Errc::empty_ring);
    EXPECT_EQ(ring.successor_point(NodeId()).code(), Errc::empty_ring);
    ASSERT_TRUE(ring.add("a", 3));
    EXPECT_EQ(ring.add("a", 3).code(), Errc::already_exists);
    EXPECT_EQ(ring.remove("b").code(), Errc::not_found);
    EXPECT_EQ(ring.add("c", 0).code(), Errc::invalid_argument);
    EXPECT_EQ(ring.add("", 1).code(), Errc::invalid_argument);
    EXPECT_EQ(ring.add("d", std::vector<NodeId>{}).code(), Errc::invalid_argument);
    EXPECT_EQ(ring.add("d", {NodeId::from_uint64(1), NodeId::from_uint64(1)}).code(),
              Errc::invalid_argument);
    EXPECT_EQ(ring.preference_list("k", 0).code(), Errc::invalid_argument);
    // A failed add leaves the ring as it was.
    EXPECT_EQ(ring.node_count(), 1u);
    EXPECT_EQ(ring.point_count(), 3u);
    ASSERT_TRUE(ring.remove("a"));
    EXPECT_TRUE(ring.empty());
    EXPECT_EQ(ring.owner("k").code(), Errc::empty_ring);
}

TEST(HashRingBasics, OwnerIsSuccessorOfTheKeyId) {
    HashRing ring;
    const NodeId p10 = NodeId::from_uint64(10), p20 = NodeId::from_uint64(20),
                 p30 = NodeId::from_uint64(30);
    ASSERT_TRUE(ring.add("a", {p10, p30}));
    ASSERT_TRUE(ring.add("b", {p20}));
    EXPECT_EQ(*ring.owner_of(NodeId::from_uint64(10)), "a");  // equal id: that point owns it
    EXPECT_EQ(*ring.owner_of(NodeId::from_uint64(11)), "b");
    EXPECT_EQ(*ring.owner_of(NodeId::from_uint64(21)), "a");
    EXPECT_EQ(*ring.owner_of(NodeId::from_uint64(31)), "a");  // past the last point: wraps
    EXPECT_EQ(*ring.owner_of(NodeId::max()), "a");
    EXPECT_EQ(*ring.successor_point(NodeId::from_uint64(15)), p20);
    EXPECT_EQ(*ring.successor_point(NodeId::from_uint64(31)), p10);
    // The key's owner is the node of successor(SHA-1(key)).
    const NodeId kid = NodeId::hash("some key");
    EXPECT_EQ(*ring.owner("some key"), *ring.owner_of(kid));
    EXPECT_EQ(HashRing::point_id("a", 3), NodeId::hash("a#3"));
}

TEST(HashRingBasics, PreferenceListIsDistinctNodesClockwise) {
    HashRing ring;
    // Points: a@10 a@11 b@20 a@25 c@30. From 9: a, b, c. From 21: a, c, b.
    ASSERT_TRUE(
        ring.add("a", {NodeId::from_uint64(10), NodeId::from_uint64(11), NodeId::from_uint64(25)}));
    ASSERT_TRUE(ring.add("b", {NodeId::from_uint64(20)}));
    ASSERT_TRUE(ring.add("c", {NodeId::from_uint64(30)}));
    EXPECT_EQ(*ring.preference_list_of(NodeId::from_uint64(9), 3),
              (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(*ring.preference_list_of(NodeId::from_uint64(21), 3),
              (std::vector<std::string>{"a", "c", "b"}));
    EXPECT_EQ(*ring.preference_list_of(NodeId::from_uint64(26), 2),
              (std::vector<std::string>{"c", "a"}));
    // Asking for more nodes than exist returns each node once.
    EXPECT_EQ(*ring.preference_list_of(NodeId::from_uint64(31), 10),
              (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(HashRingTest, LoadIsBalanced) {
    std::map<std::string, int> load;
    for (const auto& owner : owners(ring_, keys_)) ++load[owner];
    ASSERT_EQ(load.size(), 10u);
    const double mean = static_cast<double>(keys_.size()) / 10.0;
    int busiest = 0;
    for (const auto& [name, count] : load) busiest = std::max(busiest, count);
    EXPECT_LE(busiest, 1.3 * mean) << "busiest node holds " << busiest / mean << "x the mean";
}

TEST_F(HashRingTest, AddingANodeMovesOnlyItsKeysAndRemovingMovesThemBack) {
    const auto before = owners(ring_, keys_);
    const std::string newcomer = node_name(10);
    ASSERT_TRUE(ring_.add(newcomer, 100));
    const auto after = owners(ring_, keys_);

    std::size_t moved = 0;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
        if (before[i] != after[i]) {
            ++moved;
            ASSERT_EQ(after[i], newcomer) << "key " << keys_[i] << " moved between old nodes";
        } else {
            ASSERT_NE(after[i], newcomer);
        }
    }
    const double expected = static_cast<double>(keys_.size()) / 11.0;
    EXPECT_GT(moved, 0.8 * expected);
    EXPECT_LT(moved, 1.2 * expected);

    ASSERT_TRUE(ring_.remove(newcomer));
    EXPECT_EQ(owners(ring_, keys_), before);
}

TEST_F(HashRingTest, PreferenceListsStartWithTheOwnerAndHaveNoDuplicates) {
    for (std::size_t i = 0; i < 2'000; ++i) {
        const auto list = *ring_.preference_list(keys_[i], 3);
        ASSERT_EQ(list.size(), 3u);
        EXPECT_EQ(list[0], *ring_.owner(keys_[i]));
        EXPECT_EQ(std::set<std::string>(list.begin(), list.end()).size(), 3u);
    }
}

TEST_F(HashRingTest, PointsAreSortedAndBelongToTheirNode) {
    ASSERT_EQ(ring_.point_count(), 1000u);
    const auto& points = ring_.points();
    EXPECT_TRUE(std::is_sorted(points.begin(), points.end(),
                               [](const auto& a, const auto& b) { return a.id < b.id; }));
    std::map<std::string, std::set<NodeId>> by_node;
    for (const auto& p : points) by_node[ring_.names()[p.node]].insert(p.id);
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(by_node[node_name(i)].count(HashRing::point_id(node_name(i), 99)), 1u);
    }
    // After a removal the remaining points still name the right nodes.
    ASSERT_TRUE(ring_.remove(node_name(3)));
    for (const auto& p : ring_.points()) {
        EXPECT_EQ(by_node[ring_.names()[p.node]].count(p.id), 1u);
    }
}

}  // namespace
}  // namespace chordkv::chord
