#include "chord/hlc.hpp"

#include <algorithm>
#include <limits>

namespace chordkv::chord {

HybridClock::HybridClock(HybridClockOptions options) : options_(options) {
    assert(options_.skew_max.count() >= 0);
}

std::uint64_t HybridClock::stamp(std::uint64_t physical_ms) {
    assert(physical_ms <= kHlcPhysicalMsMax);
    if (physical_ms > hlc_physical_ms(last_)) {
        last_ = hlc_make(physical_ms, 0);
    } else {
        // A logical counter at kHlcLogicalMax carries into the physical part: the stamp runs
        // a millisecond ahead of physical time until the clock catches up. Only a stamp at the
        // very top of the range (physical kHlcPhysicalMsMax, year 10889) cannot advance.
        assert(last_ < std::numeric_limits<std::uint64_t>::max());
        ++last_;
    }
    return last_;
}

bool HybridClock::observe(std::uint64_t remote_stamp, std::uint64_t physical_ms) {
    const std::uint64_t remote_ms = hlc_physical_ms(remote_stamp);
    // Written as a difference so a huge skew_max cannot overflow physical_ms + skew_max.
    const auto skew_max_ms = static_cast<std::uint64_t>(options_.skew_max.count());
    if (remote_ms > physical_ms && remote_ms - physical_ms > skew_max_ms) {
        ++observations_rejected_;
        return false;
    }
    last_ = std::max(last_, remote_stamp);
    return true;
}

}  // namespace chordkv::chord
