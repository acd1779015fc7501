// Unit tests for chord::HybridClock and the stamp helpers. Physical time is passed by hand.
#include "chord/hlc.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace chordkv::chord {
namespace {

using namespace std::chrono_literals;

// A realistic wall-clock reading (2024-06-01T00:00:00Z) in milliseconds.
constexpr std::uint64_t kNowMs = 1'717'200'000'000;

TEST(HlcStampTest, LayoutMatchesGoldenValues) {
    EXPECT_EQ(hlc_make(0, 0), 0u);
    EXPECT_EQ(hlc_make(1, 2), 0x1'0002u);
    EXPECT_EQ(hlc_make(kHlcPhysicalMsMax, kHlcLogicalMax), ~std::uint64_t{0});
    EXPECT_EQ(hlc_physical_ms(hlc_make(kNowMs, 7)), kNowMs);
    EXPECT_EQ(hlc_logical(hlc_make(kNowMs, 7)), 7u);
    // Stamps order by physical time first, then by the logical counter.
    EXPECT_LT(hlc_make(kNowMs, kHlcLogicalMax), hlc_make(kNowMs + 1, 0));
    EXPECT_LT(hlc_make(kNowMs, 1), hlc_make(kNowMs, 2));
}

TEST(HybridClockTest, FirstStampFollowsPhysicalTime) {
    HybridClock clock;
    EXPECT_EQ(clock.last(), 0u);
    EXPECT_EQ(clock.stamp(kNowMs), hlc_make(kNowMs, 0));
    EXPECT_EQ(clock.last(), hlc_make(kNowMs, 0));
    // A later physical time resets the logical counter.
    EXPECT_EQ(clock.stamp(kNowMs + 5), hlc_make(kNowMs + 5, 0));
}

TEST(HybridClockTest, StampIsNeverZero) {
    HybridClock clock;
    EXPECT_EQ(clock.stamp(0), 1u);
    EXPECT_EQ(clock.stamp(0), 2u);
}

TEST(HybridClockTest, StrictlyIncreasingWhenTheClockGoesBackwards) {
    HybridClock clock;
    const std::vector<std::uint64_t> physical{
        kNowMs,      kNowMs, kNowMs - 1000, kNowMs + 3,   kNowMs + 3,
        kNowMs - 50, 0,      kNowMs + 4,    kNowMs + 100, kNowMs + 99};
    std::uint64_t previous = 0;
    for (std::uint64_t pt : physical) {
        const std::uint64_t s = clock.stamp(pt);
        EXPECT_GT(s, previous) << "physical " << pt;
        EXPECT_EQ(clock.last(), s);
        previous = s;
    }
    // While physical time is behind, stamps keep the largest physical time seen and count up.
    HybridClock backwards;
    EXPECT_EQ(backwards.stamp(kNowMs), hlc_make(kNowMs, 0));
    EXPECT_EQ(backwards.stamp(kNowMs - 1000), hlc_make(kNowMs, 1));
    EXPECT_EQ(backwards.stamp(kNowMs - 999), hlc_make(kNowMs, 2));
    EXPECT_EQ(backwards.stamp(kNowMs), hlc_make(kNowMs, 3));
    EXPECT_EQ(backwards.stamp(kNowMs + 1), hlc_make(kNowMs + 1, 0));
}

TEST(HybridClockTest, ObserveOfALaterStampOrdersTheNextStampAfterIt) {
    HybridClock clock;
    ASSERT_EQ(clock.stamp(kNowMs), hlc_make(kNowMs, 0));
    const std::uint64_t remote = hlc_make(kNowMs + 2000, 7);
    EXPECT_TRUE(clock.observe(remote, kNowMs));
    EXPECT_EQ(clock.last(), remote);
    EXPECT_EQ(clock.stamp(kNowMs + 1), hlc_make(kNowMs + 2000, 8));
    // Once physical time passes the adopted stamp, stamps follow physical time again.
    EXPECT_EQ(clock.stamp(kNowMs + 2001), hlc_make(kNowMs + 2001, 0));
    EXPECT_EQ(clock.observations_rejected(), 0u);
}

TEST(HybridClockTest, ObserveOfAnOlderStampChangesNothing) {
    HybridClock clock;
    const std::uint64_t mine = clock.stamp(kNowMs);
    EXPECT_TRUE(clock.observe(hlc_make(kNowMs - 10, 40), kNowMs));
    EXPECT_TRUE(clock.observe(mine, kNowMs));
    EXPECT_EQ(clock.last(), mine);
    EXPECT_EQ(clock.stamp(kNowMs), mine + 1);
}

TEST(HybridClockTest, ObservedStampIsNeverReturnedAgain) {
    HybridClock clock;
    const std::uint64_t remote = hlc_make(kNowMs, 3);
    ASSERT_TRUE(clock.observe(remote, kNowMs));
    // Same physical time as the remote write: the local write must still order after it.
    EXPECT_EQ(clock.stamp(kNowMs), hlc_make(kNowMs, 4));
}

TEST(HybridClockTest, LogicalOverflowCarriesIntoPhysical) {
    HybridClock clock;
    ASSERT_TRUE(clock.observe(hlc_make(kNowMs, kHlcLogicalMax - 1), kNowMs));
    EXPECT_EQ(clock.stamp(kNowMs), hlc_make(kNowMs, kHlcLogicalMax));
    EXPECT_EQ(clock.stamp(kNowMs), hlc_make(kNowMs + 1, 0));
    EXPECT_EQ(clock.stamp(kNowMs), hlc_make(kNowMs + 1, 1));

    // The same by stamping alone: 2^16 stamps in one millisecond fill the counter.
    HybridClock busy;
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i <= kHlcLogicalMax; ++i) s = busy.stamp(kNowMs);
    EXPECT_EQ(s, hlc_make(kNowMs, kHlcLogicalMax));
    EXPECT_EQ(busy.stamp(kNowMs), hlc_make(kNowMs + 1, 0));
    // Physical time catching up with the carried stamp continues from it.
    EXPECT_EQ(busy.stamp(kNowMs + 1), hlc_make(kNowMs + 1, 1));
}

TEST(HybridClockTest, RejectsStampsTooFarAheadOfPhysicalTime) {
    HybridClock clock;  // default skew_max: 10 s
    EXPECT_EQ(clock.options().skew_max, 10s);
    const std::uint64_t mine = clock.stamp(kNowMs);

    const std::uint64_t too_far = hlc_make(kNowMs + 10'001, 0);
    EXPECT_FALSE(clock.observe(too_far, kNowMs));
    EXPECT_EQ(clock.last(), mine);
    EXPECT_EQ(clock.observations_rejected(), 1u);
    EXPECT_EQ(clock.stamp(kNowMs), mine + 1);

    // The limit is inclusive, and judged against the physical time passed in.
    const std::uint64_t at_limit = hlc_make(kNowMs + 10'000, kHlcLogicalMax);
    EXPECT_TRUE(clock.observe(at_limit, kNowMs));
    EXPECT_EQ(clock.last(), at_limit);
    EXPECT_TRUE(clock.observe(hlc_make(kNowMs + 30'000, 0), kNowMs + 20'000));
    EXPECT_EQ(clock.observations_rejected(), 1u);
}

TEST(HybridClockTest, SkewMaxIsConfigurable) {
    HybridClock strict(HybridClockOptions{50ms});
    EXPECT_FALSE(strict.observe(hlc_make(kNowMs + 51, 0), kNowMs));
    EXPECT_TRUE(strict.observe(hlc_make(kNowMs + 50, 0), kNowMs));

    HybridClock none(HybridClockOptions{0ms});
    EXPECT_FALSE(none.observe(hlc_make(kNowMs + 1, 0), kNowMs));
    // Same millisecond, higher counter: not ahead in physical time, so adopted.
    EXPECT_TRUE(none.observe(hlc_make(kNowMs, 9), kNowMs));
    EXPECT_EQ(none.stamp(kNowMs), hlc_make(kNowMs, 10));
    EXPECT_EQ(none.observations_rejected(), 1u);
}

}  // namespace
}  // namespace chordkv::chord
