// Histogram: latencies counted in log-linear buckets, in the manner of HdrHistogram (Gil Tene):
// each power-of-two range of nanoseconds [2^m, 2^(m+1)) is split into 128 equal sub-buckets, so
// a value is known to within 1/128 (< 0.8 %) of itself; values below 256 ns are exact.
//
//   index:   0 .. 255           256 .. 383        384 .. 511       ...   3712 .. 3839
//   values:  0 .. 255 ns exact  256 .. 511 ns     512 .. 1023 ns         2^35 .. 2^36 ns
//                               (2 ns per bucket) (4 ns per bucket)      (2^28 ns per bucket)
//
// Range 0 .. 60 s: a larger value counts as 60 s (and in clamped()). Memory is fixed (3,840
// counters, 30 KiB); record() is a few shifts and an increment. min, max, mean are exact.
//
// Threading: not thread-safe; give each thread its own and merge() them at the end.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace chordkv::tools {

class Histogram {
public:
    using Duration = std::chrono::nanoseconds;
    // The largest value told apart; larger ones are recorded as this.
    static constexpr Duration kHighest = std::chrono::seconds(60);

    // Counts one value (negative counts as 0).
    void record(Duration value);
    // Adds every value of `other`.
    void merge(const Histogram& other);
    void reset();

    std::uint64_t count() const noexcept { return count_; }
    // Values recorded above kHighest.
    std::uint64_t clamped() const noexcept { return clamped_; }
    // Zero when empty.
    Duration min() const noexcept { return count_ ? Duration(min_) : Duration(0); }
    Duration max() const noexcept { return Duration(max_); }
    Duration mean() const noexcept;
    // The smallest value v such that `percent` % of the values are <= v, to the bucket's
    // precision: the upper end of the bucket the rank falls in, never above max(). percent is
    // clamped to [0, 100]; 0 gives min(). Zero when empty.
    Duration percentile(double percent) const;

    // Bucket layout, for tests: the bucket of a value in nanoseconds, and the largest value
    // that falls in a bucket.
    static std::size_t bucket_of(std::uint64_t ns) noexcept;
    static std::uint64_t bucket_high(std::size_t index) noexcept;
    static constexpr std::size_t kSubBucketBits = 7;
    static constexpr std::size_t kSubBuckets = std::size_t{1} << kSubBucketBits;  // 128
    // 60 s < 2^36 ns: octaves 2^7 .. 2^35 after the exact first 256 values.
    static constexpr std::size_t kBuckets = (36 - kSubBucketBits + 1) * kSubBuckets;

private:
    std::array<std::uint64_t, kBuckets> counts_{};
    std::uint64_t count_ = 0;
    std::uint64_t clamped_ = 0;
    std::uint64_t min_ = 0;
    std::uint64_t max_ = 0;
    double sum_ = 0;  // nanoseconds, for the mean
};

}  // namespace chordkv::tools
