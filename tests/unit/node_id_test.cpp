#include "chord/node_id.hpp"

#include <gtest/gtest.h>

#include <random>

namespace chordkv::chord {
namespace {

NodeId n(std::uint64_t v) {
    return NodeId::from_uint64(v);
}

TEST(NodeIdTest, Sha1KnownAnswers) {
    // FIPS 180 test vectors and the well-known pangram digest.
    EXPECT_EQ(NodeId::hash("").to_hex(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    EXPECT_EQ(NodeId::hash("abc").to_hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
    EXPECT_EQ(NodeId::hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").to_hex(),
              "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    EXPECT_EQ(NodeId::hash("The quick brown fox jumps over the lazy dog").to_hex(),
              "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12");
    // Binary-safe: an embedded NUL is part of the input.
    EXPECT_NE(NodeId::hash(std::string_view("a\0b", 3)), NodeId::hash("a"));
}

TEST(NodeIdTest, HexRoundTripAndRejectsBadInput) {
    const std::string hex = "0123456789abcdef0123456789ABCDEF01234567";
    auto id = NodeId::from_hex(hex);
    ASSERT_TRUE(id.has_value());
    EXPECT_EQ(id->to_hex(), "0123456789abcdef0123456789abcdef01234567");
    EXPECT_EQ(id->short_hex(6), "012345");
    EXPECT_FALSE(NodeId::from_hex(""));
    EXPECT_FALSE(NodeId::from_hex(hex.substr(1)));                               // 39 digits
    EXPECT_FALSE(NodeId::from_hex(hex + "0"));                                   // 41 digits
    EXPECT_FALSE(NodeId::from_hex("g123456789abcdef0123456789abcdef01234567"));  // not hex
    EXPECT_FALSE(NodeId::from_hex("0x23456789abcdef0123456789abcdef01234567"));
    EXPECT_FALSE(NodeId::from_bytes("short"));
    EXPECT_EQ(NodeId::from_bytes(std::string(20, '\xff')), NodeId::max());
}

TEST(NodeIdTest, OrderIsNumeric) {
    EXPECT_LT(n(1), n(2));
    EXPECT_LT(n(0xff), n(0x100));
    EXPECT_LT(n(~0ull), NodeId::max());
    EXPECT_EQ(n(0), NodeId());
    EXPECT_EQ(n(0x1234).high64(), 0u);
    EXPECT_EQ(NodeId::max().high64(), ~0ull);
}

TEST(NodeIdTest, AddPow2WrapsModulo2To160) {
    const NodeId half = NodeId().add_pow2(159);
    EXPECT_EQ(half.to_hex(), "8000000000000000000000000000000000000000");
    EXPECT_EQ(half.add_pow2(159), NodeId());  // 2^159 + 2^159 = 2^160 ≡ 0
    const NodeId x = *NodeId::from_hex("c000000000000000000000000000000000000005");
    EXPECT_EQ(x.add_pow2(159).to_hex(), "4000000000000000000000000000000000000005");
    EXPECT_EQ(NodeId::max().add_pow2(0), NodeId());
    EXPECT_EQ(n(1).add_pow2(0), n(2));
    EXPECT_EQ(n(0).add_pow2(64).to_hex(), "0000000000000000000000010000000000000000");
    EXPECT_EQ(NodeId().next(), n(1));
    EXPECT_EQ(NodeId().prev(), NodeId::max());
}

TEST(NodeIdTest, AdditionAndSubtractionAreInverse) {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 1000; ++i) {
        NodeId::Bytes a{}, b{};
        for (auto& byte : a) byte = static_cast<std::uint8_t>(rng());
        for (auto& byte : b) byte = static_cast<std::uint8_t>(rng());
        const NodeId x(a), y(b);
        EXPECT_EQ((x + y) - y, x);
        EXPECT_EQ(x + distance(x, y), y);
    }
}

TEST(NodeIdTest, ClockwiseDistance) {
    EXPECT_EQ(distance(n(10), n(15)), n(5));
    EXPECT_EQ(distance(n(15), n(10)), NodeId::max() - n(4));  // 2^160 - 5
    EXPECT_EQ(distance(n(3), n(3)), NodeId());
    EXPECT_EQ(distance(NodeId::max(), n(0)), n(1));
}

TEST(NodeIdTest, OpenIntervalWithoutWrap) {
    EXPECT_TRUE(in_open(n(5), n(1), n(9)));
    EXPECT_FALSE(in_open(n(1), n(1), n(9)));
    EXPECT_FALSE(in_open(n(9), n(1), n(9)));
    EXPECT_FALSE(in_open(n(10), n(1), n(9)));
    EXPECT_FALSE(in_open(n(0), n(1), n(9)));
}

TEST(NodeIdTest, IntervalsAcrossZero) {
    const NodeId a = NodeId::max() - n(10);  // near the top
    const NodeId b = n(10);                  // past zero
    EXPECT_TRUE(in_open(NodeId::max(), a, b));
    EXPECT_TRUE(in_open(n(0), a, b));
    EXPECT_TRUE(in_open(n(9), a, b));
    EXPECT_FALSE(in_open(b, a, b));
    EXPECT_FALSE(in_open(a, a, b));
    EXPECT_FALSE(in_open(n(11), a, b));
    EXPECT_FALSE(in_open(a - n(1), a, b));
    EXPECT_TRUE(in_open_closed(b, a, b));
    EXPECT_FALSE(in_open_closed(a, a, b));
    EXPECT_TRUE(in_closed_open(a, a, b));
    EXPECT_FALSE(in_closed_open(b, a, b));
}

TEST(NodeIdTest, EqualEndsMeanTheWholeRing) {
    const NodeId a = n(42);
    EXPECT_FALSE(in_open(a, a, a));  // (a, a) is everything but a
    EXPECT_TRUE(in_open(n(41), a, a));
    EXPECT_TRUE(in_open(n(43), a, a));
    EXPECT_TRUE(in_open(NodeId::max(), a, a));
    EXPECT_TRUE(in_open_closed(a, a, a));  // (a, a] is the whole ring
    EXPECT_TRUE(in_open_closed(n(0), a, a));
    EXPECT_TRUE(in_closed_open(a, a, a));
    EXPECT_TRUE(in_closed_open(n(7), a, a));
}

TEST(NodeIdTest, RingShare) {
    EXPECT_DOUBLE_EQ(ring_share(n(5), n(5)), 1.0);
    EXPECT_DOUBLE_EQ(ring_share(NodeId(), NodeId().add_pow2(159)), 0.5);
    EXPECT_DOUBLE_EQ(ring_share(NodeId().add_pow2(159), NodeId()), 0.5);
    EXPECT_NEAR(ring_share(NodeId().add_pow2(158), NodeId()), 0.75, 1e-12);
}

}  // namespace
}  // namespace chordkv::chord
