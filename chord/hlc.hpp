// HybridClock: a hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014) that
// stamps the versions of writes (DESIGN.md "Storage", "Data path": last writer wins).
//
// A stamp is one 64-bit number, so versions compare as plain integers:
//
//     63                               16 15            0
//     +-----------------------------------+--------------+
//     | physical ms since the Unix epoch  | logical      |
//     | (48 bits: good until year 10889)  | (16 bits)    |
//     +-----------------------------------+--------------+
//
//   stamp(pt)        last = pt > phys(last) ? make(pt, 0) : last + 1  → return last
//                    (last + 1 carries a full logical counter into the physical part)
//   observe(r, pt)   phys(r) - pt > skew_max ? reject : last = max(last, r)
//
// So every stamp is strictly greater than every stamp returned or accepted before it, stays
// close to physical time while clocks agree, and still orders causally related writes when
// they do not. A peer whose clock runs far ahead would drag every later stamp with it; its
// stamps are rejected instead (counted in observations_rejected()), so the clock stays within
// skew_max of this node's physical time.
//
// Sans-I/O (STYLE.md 1, 2): the caller reads its clock and passes the milliseconds in; this
// class reads no clock and takes no lock. One instance per process, used by one thread (or
// guarded by the caller).
#pragma once

#include <cassert>
#include <chrono>
#include <cstdint>

namespace chordkv::chord {

// Bits of a stamp that hold the logical counter; the rest hold physical milliseconds.
inline constexpr int kHlcLogicalBits = 16;
inline constexpr std::uint64_t kHlcLogicalMax = (std::uint64_t{1} << kHlcLogicalBits) - 1;
inline constexpr std::uint64_t kHlcPhysicalMsMax = (std::uint64_t{1} << (64 - kHlcLogicalBits)) - 1;

// The stamp (physical_ms, logical). Requires physical_ms <= kHlcPhysicalMsMax and
// logical <= kHlcLogicalMax (asserted).
constexpr std::uint64_t hlc_make(std::uint64_t physical_ms, std::uint64_t logical) {
    assert(physical_ms <= kHlcPhysicalMsMax && logical <= kHlcLogicalMax);
    return (physical_ms << kHlcLogicalBits) | logical;
}

// The physical milliseconds of `stamp`.
constexpr std::uint64_t hlc_physical_ms(std::uint64_t stamp) {
    return stamp >> kHlcLogicalBits;
}

// The logical counter of `stamp`.
constexpr std::uint64_t hlc_logical(std::uint64_t stamp) {
    return stamp & kHlcLogicalMax;
}

struct HybridClockOptions {
    // How far a remote stamp's physical part may run ahead of our physical time and still be
    // adopted. Larger tolerates worse clock sync; smaller limits how far one bad peer can
    // push our versions ahead of real time. 10 s: NTP-synced hosts are within milliseconds.
    std::chrono::milliseconds skew_max = std::chrono::seconds(10);
};

class HybridClock {
public:
    // Starts with last() == 0, so the first stamp is at least 1. Requires
    // options.skew_max >= 0 (asserted).
    explicit HybridClock(HybridClockOptions options = {});

    // A new stamp, strictly greater than every stamp returned by stamp() or accepted by
    // observe() so far: (physical_ms, 0) when physical_ms is ahead of last(), otherwise
    // last() + 1. A clock that goes backwards therefore never makes versions go backwards.
    // Requires physical_ms <= kHlcPhysicalMsMax (asserted).
    std::uint64_t stamp(std::uint64_t physical_ms);

    // Merges a stamp received from a peer (a version read from a replica, a write to store),
    // so the next stamp() orders after it. `physical_ms` is this node's time now. Returns
    // false, leaving the clock unchanged, when `remote_stamp` is more than skew_max ahead of
    // `physical_ms` (counted in observations_rejected()); true otherwise, including when the
    // remote stamp is older than last() and so changes nothing.
    bool observe(std::uint64_t remote_stamp, std::uint64_t physical_ms);

    // The largest stamp returned or accepted so far; 0 before any.
    std::uint64_t last() const noexcept { return last_; }

    // How many observe() calls were rejected for skew, since construction.
    std::uint64_t observations_rejected() const noexcept { return observations_rejected_; }

    const HybridClockOptions& options() const noexcept { return options_; }

private:
    HybridClockOptions options_;
    std::uint64_t last_ = 0;
    std::uint64_t observations_rejected_ = 0;
};

}  // namespace chordkv::chord
