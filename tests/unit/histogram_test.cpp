// tools/histogram: the bucket layout (exact below 256 ns, < 1/128 relative error above, up to
// 60 s), percentiles against a sorted oracle, merge, and clamping.
#include "tools/histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace chordkv::tools {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(Histogram, EmptyReportsZero) {
    Histogram h;
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.percentile(50), nanoseconds(0));
    EXPECT_EQ(h.min(), nanoseconds(0));
    EXPECT_EQ(h.max(), nanoseconds(0));
    EXPECT_EQ(h.mean(), nanoseconds(0));
}

TEST(Histogram, SmallValuesAreExact) {
    for (std::uint64_t ns = 0; ns < 256; ++ns) {
        EXPECT_EQ(Histogram::bucket_of(ns), ns);
        EXPECT_EQ(Histogram::bucket_high(ns), ns);
    }
}

TEST(Histogram, BucketsAreContiguousAndWithinPrecision) {
    // Every bucket starts right after the previous one ends, and spans < 1/128 of its values.
    std::uint64_t low = 0;
    for (std::size_t i = 0; i < Histogram::kBuckets; ++i) {
        const std::uint64_t high = Histogram::bucket_high(i);
        ASSERT_GE(high, low) << i;
        EXPECT_EQ(Histogram::bucket_of(low), i);
        EXPECT_EQ(Histogram::bucket_of(high), i);
        EXPECT_LE(static_cast<double>(high - low), static_cast<double>(low) / 128.0) << i;
        low = high + 1;
    }
    EXPECT_GT(low, static_cast<std::uint64_t>(Histogram::kHighest.count()));
}

TEST(Histogram, PercentilesMatchASortedOracleWithinOnePercent) {
    std::mt19937_64 rng(7);
    // Log-uniform latencies from 1 µs to 10 s.
    std::uniform_real_distribution<double> exponent(3.0, 10.0);
    std::vector<std::int64_t> values;
    Histogram h;
    for (int i = 0; i < 100'000; ++i) {
        const auto ns = static_cast<std::int64_t>(std::pow(10.0, exponent(rng)));
        values.push_back(ns);
        h.record(nanoseconds(ns));
    }
    std::sort(values.begin(), values.end());
    EXPECT_EQ(h.count(), values.size());
    EXPECT_EQ(h.min(), nanoseconds(values.front()));
    EXPECT_EQ(h.max(), nanoseconds(values.back()));
    for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
        const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * values.size()));
        const double want = static_cast<double>(values[rank - 1]);
        const double got = static_cast<double>(h.percentile(p).count());
        EXPECT_GE(got, want) << "p" << p;
        EXPECT_LE(got, want * 1.01) << "p" << p;
    }
    double sum = 0;
    for (auto v : values) sum += static_cast<double>(v);
    EXPECT_NEAR(static_cast<double>(h.mean().count()), sum / values.size(), 1.0);
}

TEST(Histogram, PercentileOfAFewValues) {
    Histogram h;
    h.record(microseconds(100));
    h.record(microseconds(200));
    h.record(microseconds(300));
    h.record(milliseconds(5));
    // The upper end of the bucket holding the value, which is within 1/128 above it.
    const auto p50 = h.percentile(50);
    EXPECT_GE(p50, microseconds(200));
    EXPECT_LE(p50.count(), 200'000 + 200'000 / 128);
    EXPECT_EQ(h.percentile(100), milliseconds(5));
    EXPECT_EQ(h.percentile(0), microseconds(100));
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
    Histogram a;
    Histogram b;
    Histogram all;
    for (int i = 1; i <= 1000; ++i) {
        (i % 3 ? a : b).record(microseconds(i));
        all.record(microseconds(i));
    }
    a.merge(b);
    EXPECT_EQ(a.count(), all.count());
    EXPECT_EQ(a.min(), all.min());
    EXPECT_EQ(a.max(), all.max());
    EXPECT_EQ(a.mean(), all.mean());
    for (double p : {50.0, 99.0, 99.9}) EXPECT_EQ(a.percentile(p), all.percentile(p));
    Histogram empty;
    a.merge(empty);
    EXPECT_EQ(a.count(), all.count());
    empty.merge(all);
    EXPECT_EQ(empty.min(), all.min());
}

TEST(Histogram, ValuesAboveSixtySecondsAreClamped) {
    Histogram h;
    h.record(seconds(90));
    h.record(nanoseconds(-5));
    EXPECT_EQ(h.count(), 2u);
    EXPECT_EQ(h.clamped(), 1u);
    EXPECT_EQ(h.max(), Histogram::kHighest);
    EXPECT_EQ(h.min(), nanoseconds(0));
    h.reset();
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.clamped(), 0u);
}

}  // namespace
}  // namespace chordkv::tools
