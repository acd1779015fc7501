#include "tools/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace chordkv::tools {

namespace {

// Position of the highest set bit of v > 0.
int msb(std::uint64_t v) noexcept {
    return 63 - __builtin_clzll(v);
}

}  // namespace

std::size_t Histogram::bucket_of(std::uint64_t ns) noexcept {
    if (ns < 2 * kSubBuckets) return static_cast<std::size_t>(ns);
    // ns in [2^m, 2^(m+1)), m >= 8: drop the low bits so that 8 significant bits remain.
    const auto shift = static_cast<std::size_t>(msb(ns)) - kSubBucketBits;
    return shift * kSubBuckets + static_cast<std::size_t>(ns >> shift);
}

std::uint64_t Histogram::bucket_high(std::size_t index) noexcept {
    if (index < 2 * kSubBuckets) return index;
    const std::size_t shift = index / kSubBuckets - 1;
    const std::uint64_t sub = index - shift * kSubBuckets;  // 128 .. 255
    return ((sub + 1) << shift) - 1;
}

void Histogram::record(Duration value) {
    std::uint64_t ns = value.count() > 0 ? static_cast<std::uint64_t>(value.count()) : 0;
    const auto highest = static_cast<std::uint64_t>(kHighest.count());
    if (ns > highest) {
        ns = highest;
        ++clamped_;
    }
    ++counts_[bucket_of(ns)];
    min_ = count_ == 0 ? ns : std::min(min_, ns);
    max_ = std::max(max_, ns);
    ++count_;
    sum_ += static_cast<double>(ns);
}

void Histogram::merge(const Histogram& other) {
    if (other.count_ == 0) return;
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
    count_ += other.count_;
    clamped_ += other.clamped_;
    sum_ += other.sum_;
}

void Histogram::reset() {
    *this = Histogram();
}

Histogram::Duration Histogram::mean() const noexcept {
    if (count_ == 0) return Duration(0);
    return Duration(static_cast<std::int64_t>(std::llround(sum_ / static_cast<double>(count_))));
}

Histogram::Duration Histogram::percentile(double percent) const {
    if (count_ == 0) return Duration(0);
    percent = std::clamp(percent, 0.0, 100.0);
    // The rank of the value asked for, 1-based: at least the first value.
    const double exact = std::ceil(percent / 100.0 * static_cast<double>(count_));
    const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(exact));
    if (rank <= 1 && percent == 0.0) return min();
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        seen += counts_[i];
        if (seen >= rank) return Duration(std::min(bucket_high(i), max_));
    }
    return max();
}

}  // namespace chordkv::tools
