// KeyOracle: which reads a key's history of acknowledged and failed writes allows.
#include "oracle.hpp"

#include <gtest/gtest.h>

namespace chordkv::chaos {
namespace {

TEST(KeyOracle, AKeyNeverWrittenReadsNotFound) {
    KeyOracle oracle(2);
    EXPECT_TRUE(oracle.read_allowed(0, std::nullopt));
    EXPECT_FALSE(oracle.read_allowed(0, "v1"));
}

TEST(KeyOracle, TheLatestAcknowledgedWriteIsTheOnlyAllowedRead) {
    KeyOracle oracle(1);
    oracle.on_write_acked(0, "v1", 10, 0.1);
    oracle.on_write_acked(0, "v2", 11, 0.2);
    EXPECT_TRUE(oracle.read_allowed(0, "v2"));
    EXPECT_FALSE(oracle.read_allowed(0, "v1"));
    EXPECT_FALSE(oracle.read_allowed(0, std::nullopt));
    oracle.on_write_acked(0, std::nullopt, 12, 0.3);  // an acknowledged delete
    EXPECT_TRUE(oracle.read_allowed(0, std::nullopt));
    EXPECT_FALSE(oracle.read_allowed(0, "v2"));
}

TEST(KeyOracle, WritesThatFailedAfterTheLatestAckMayBeRead) {
    KeyOracle oracle(1);
    oracle.on_write_acked(0, "v1", 10, 0.1);
    oracle.on_write_failed(0, "v2", "timed out", 0.2);
    oracle.on_write_failed(0, std::nullopt, "unreachable", 0.3);
    EXPECT_TRUE(oracle.read_allowed(0, "v1"));
    EXPECT_TRUE(oracle.read_allowed(0, "v2"));
    EXPECT_TRUE(oracle.read_allowed(0, std::nullopt));
    EXPECT_FALSE(oracle.read_allowed(0, "v0"));
    // The next acknowledged write supersedes them.
    oracle.on_write_acked(0, "v3", 14, 0.4);
    EXPECT_FALSE(oracle.read_allowed(0, "v2"));
    EXPECT_FALSE(oracle.read_allowed(0, std::nullopt));
    EXPECT_TRUE(oracle.read_allowed(0, "v3"));
}

TEST(KeyOracle, KeysAreIndependentAndEventsAreBounded) {
    KeyOracle oracle(2, 3);
    for (int i = 0; i < 10; ++i) {
        oracle.on_write_acked(1, "w" + std::to_string(i), 100 + static_cast<std::uint64_t>(i),
                              i * 0.1);
    }
    EXPECT_TRUE(oracle.read_allowed(0, std::nullopt));
    EXPECT_EQ(oracle.history(1).events.size(), 3u);
    EXPECT_EQ(oracle.history(1).writes, 10u);
    EXPECT_FALSE(oracle.on_read(1, "w8", 108, 2.0));
    EXPECT_NE(oracle.events(1, "  ").find("STALE"), std::string::npos);
    EXPECT_EQ(oracle.expected(1), "'w9' v=109");
    EXPECT_EQ(oracle.acked_version(1, "w3"), 103u);
    EXPECT_FALSE(oracle.acked_version(1, "w10").has_value());
    EXPECT_FALSE(oracle.acked_version(0, std::nullopt).has_value());
}

}  // namespace
}  // namespace chordkv::chaos
