#include "chord/placement.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "chord/hash_ring.hpp"

namespace chordkv::chord {
namespace {

std::string name(int i) {
    return "127.0.0.1:" + std::to_string(7601 + i);
}

// Adds process `who` with `count` vnodes to `ring`, placed or with SHA-1 ids.
void join(std::map<NodeId, std::string>& ring, const std::string& who, std::uint32_t count,
          bool placed) {
    std::vector<NodeId> ids;
    if (placed) {
        ids = place_vnodes(ring, count, who);
    } else {
        for (std::uint32_t i = 0; i < count; ++i) ids.push_back(HashRing::point_id(who, i));
    }
    ASSERT_EQ(ids.size(), count);
    for (const auto& id : ids) ASSERT_TRUE(ring.emplace(id, who).second) << id.to_hex();
}

// Largest and smallest share over the processes, each divided by its fair share.
std::pair<double, double> spread(const std::map<NodeId, std::string>& ring,
                                 const std::map<std::string, std::uint32_t>& weights) {
    std::uint32_t total = 0;
    for (const auto& [who, w] : weights) total += w;
    double high = 0, low = 1e9;
    for (const auto& [who, share] : ring_shares(ring)) {
        const double fair = static_cast<double>(weights.at(who)) / total;
        high = std::max(high, share / fair);
        low = std::min(low, share / fair);
    }
    return {high, low};
}

TEST(Placement, AnEmptyRingGetsTheSha1Ids) {
    const auto ids = place_vnodes({}, 4, "a:1");
    ASSERT_EQ(ids.size(), 4u);
    for (std::uint32_t i = 0; i < 4; ++i) EXPECT_EQ(ids[i], HashRing::point_id("a:1", i));
}

TEST(Placement, TheSecondProcessTakesHalf) {
    std::map<NodeId, std::string> ring;
    join(ring, name(0), 8, false);
    join(ring, name(1), 8, true);
    const auto shares = ring_shares(ring);
    EXPECT_NEAR(shares.at(name(0)), 0.5, 0.005);
    EXPECT_NEAR(shares.at(name(1)), 0.5, 0.005);
}

TEST(Placement, SharesAddUpToTheWholeRing) {
    std::map<NodeId, std::string> ring;
    for (int i = 0; i < 5; ++i) join(ring, name(i), 8, i > 0);
    double total = 0;
    for (const auto& [who, share] : ring_shares(ring)) total += share;
    EXPECT_NEAR(total, 1.0, 1e-9);
    EXPECT_TRUE(ring_shares({}).empty());
    EXPECT_DOUBLE_EQ(ring_shares({{NodeId::from_uint64(5), "x"}}).at("x"), 1.0);
}

// Ten processes joining one at a time stay near even with placement, and not without it (the
// same names with SHA-1 ids: bench-ring's three processes own 37 / 19 / 44 %).
TEST(Placement, SequentialJoinsStayNearEven) {
    for (std::uint32_t vnodes : {4u, 8u, 32u}) {
        std::map<NodeId, std::string> placed, hashed;
        std::map<std::string, std::uint32_t> weights;
        for (int i = 0; i < 10; ++i) {
            join(placed, name(i), vnodes, i > 0);
            join(hashed, name(i), vnodes, false);
            weights[name(i)] = vnodes;
            const auto [high, low] = spread(placed, weights);
            // 4 vnodes give the cuts least room: a process takes from at most 4 arcs.
            const double slack = vnodes == 4 ? 0.2 : 0.1;
            EXPECT_LT(high, 1 + slack) << vnodes << " vnodes, " << i + 1 << " processes";
            EXPECT_GT(low, 1 - slack) << vnodes << " vnodes, " << i + 1 << " processes";
        }
        const auto [high, low] = spread(hashed, weights);
        EXPECT_GT(high - low, 0.3) << "SHA-1 ids were even by chance: the test shows nothing";
    }
}

TEST(Placement, AHeavierProcessTakesMore) {
    std::map<NodeId, std::string> ring;
    join(ring, name(0), 8, false);
    join(ring, name(1), 8, true);
    join(ring, name(2), 16, true);  // weight 16 of 32: half the ring
    const auto shares = ring_shares(ring);
    EXPECT_NEAR(shares.at(name(2)), 0.5, 0.03);
    EXPECT_NEAR(shares.at(name(0)), 0.25, 0.03);
    EXPECT_NEAR(shares.at(name(1)), 0.25, 0.03);
}

TEST(Placement, IsDeterministicAndNamesGiveDifferentIds) {
    std::map<NodeId, std::string> ring;
    join(ring, name(0), 8, false);
    const auto a = place_vnodes(ring, 8, name(1));
    EXPECT_EQ(a, place_vnodes(ring, 8, name(1)));
    // Two processes placing from the same view: the same cuts, but never the same id.
    const auto b = place_vnodes(ring, 8, name(2));
    std::set<NodeId> all(a.begin(), a.end());
    all.insert(b.begin(), b.end());
    EXPECT_EQ(all.size(), 16u);
}

TEST(Placement, IgnoresTheJoinersOldVnodes) {
    std::map<NodeId, std::string> ring;
    join(ring, name(0), 8, false);
    join(ring, name(1), 8, false);  // name(1) before it lost its data dir
    std::map<NodeId, std::string> without = ring;
    for (auto it = without.begin(); it != without.end();) {
        it = it->second == name(1) ? without.erase(it) : std::next(it);
    }
    EXPECT_EQ(place_vnodes(ring, 8, name(1)), place_vnodes(without, 8, name(1)));
}

TEST(Placement, TinyArcsAndManyVnodes) {
    // Two vnodes one id apart, and a single huge arc: the cuts go into the huge one.
    std::map<NodeId, std::string> ring{{NodeId::from_uint64(100), "x"},
                                       {NodeId::from_uint64(101), "y"}};
    const auto ids = place_vnodes(ring, 256, "z");
    ASSERT_EQ(ids.size(), 256u);
    std::set<NodeId> distinct(ids.begin(), ids.end());
    EXPECT_EQ(distinct.size(), 256u);
    for (const auto& id : ids) EXPECT_EQ(ring.count(id), 0u);
    for (const auto& id : ids) ring.emplace(id, "z");
    // y holds one id of the ring (an arc no cut can split), x almost all: z takes from x.
    const auto shares = ring_shares(ring);
    EXPECT_GT(shares.at("z"), 0.45);
    EXPECT_LT(shares.at("y"), 1e-9);
}

}  // namespace
}  // namespace chordkv::chord
