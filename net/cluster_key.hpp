// The cluster key: a secret shared by every process of a cluster, read from a file. Every
// frame is tagged with HMAC-SHA256 under it (net/codec.hpp), and every tagged frame carries a
// freshness stamp under that tag so that a captured frame cannot be replayed (below).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <tuple>

#include "chord/result.hpp"

namespace chordkv::net {

// Shortest key accepted: 16 bytes (128 bits).
inline constexpr std::size_t kClusterKeyBytesMin = 16;
// Longest key file read.
inline constexpr std::size_t kClusterKeyBytesMax = 4096;

// The key is the file's bytes, with one trailing newline removed (so `openssl rand -hex 32 >
// key` works). Errors: invalid_argument naming the file when it cannot be read, is shorter
// than kClusterKeyBytesMin or longer than kClusterKeyBytesMax.
Result<std::string> read_cluster_key_file(const std::string& path);

// --- replay protection -------------------------------------------------------------------------
//
// A MAC alone does not stop replay: a captured frame stays valid forever. So every tagged frame
// carries a stamp inside the bytes its tag covers (layout: net/codec.hpp) — when it was sent,
// which process sent it and that process's sequence number — and a receiver accepts a stamp
// once, and only inside a window around its own clock:
//
//   UDP datagram ─► MAC ─► ReplayGuard::admit(stamp) ─────────────────────► decode, deliver
//   TCP stream ───► MAC ─► 1st frame: the peer's stream-open frame, admit(stamp)
//                          later frames: same sender, larger sequence, check_window(stamp)
//
// A TCP stream thus costs one guard entry however many frames it carries (FrameReader in
// net/codec.hpp); a replayed stream fails at its stream-open frame, and frames cut out of a
// stream cannot start a new one. Keyless clusters send no stamps and check none.
//
// Not covered: a frame is not bound to its receiver, so a frame captured on its way to node A
// can be replayed once to node B inside the window (the protocol's envelopes name their
// destination; data-path requests do not).

// The freshness stamp of a tagged frame.
struct FrameStamp {
    std::uint64_t sent_at_ms = 0;  // the sender's wall clock, milliseconds since the Unix epoch
    std::uint64_t sender = 0;      // random, drawn once per sender process
    std::uint64_t sequence = 0;    // the sender's counter: +1 for every frame it stamps

    friend bool operator==(const FrameStamp& a, const FrameStamp& b) {
        return std::tie(a.sent_at_ms, a.sender, a.sequence) ==
               std::tie(b.sent_at_ms, b.sender, b.sequence);
    }
    friend bool operator<(const FrameStamp& a, const FrameStamp& b) {
        return std::tie(a.sent_at_ms, a.sender, a.sequence) <
               std::tie(b.sent_at_ms, b.sender, b.sequence);
    }
};

// This process's next stamp: the wall clock now, the process's sender id and the next value of
// its sequence counter. Every call returns a different stamp; calls ordered by happens-before
// get increasing sequence numbers. Thread-safe.
FrameStamp next_frame_stamp();
// This process's sender id: 64 random bits (OpenSSL RAND_bytes) drawn on first use.
std::uint64_t frame_sender_id();

struct ReplayGuardOptions {
    // How far a stamp's time may lie from the receiver's clock, either way: covers transit,
    // queueing and clock skew between hosts. Default 30 s.
    std::chrono::milliseconds window{30'000};
    // Stamps remembered to catch duplicates: about 64 bytes each (a std::set node), so the
    // default of 65536 costs at most ~5 MiB; it covers ~2000 admitted frames a second without
    // narrowing the window (see ReplayGuard). At least 1.
    std::size_t entries_max = 65'536;
};

struct ReplayGuardStats {
    std::uint64_t admitted = 0;    // stamps admitted (admit) or found fresh (check_window)
    std::uint64_t too_old = 0;     // earlier than now - window
    std::uint64_t too_new = 0;     // later than now + window
    std::uint64_t forgotten = 0;   // inside the window, but at or before the horizon
    std::uint64_t duplicates = 0;  // admitted before

    std::uint64_t rejected() const noexcept { return too_old + too_new + forgotten + duplicates; }
};

// Admits each stamp at most once, and only inside the window around `now`.
//
// Admitted stamps are remembered in a set ordered by time. A stamp leaves the set when it falls
// out of the window, or — when the set holds entries_max stamps — oldest first; either way the
// guard raises its horizon to the departing stamp's time and rejects every stamp at or before
// the horizon from then on. Invariant: every admitted stamp later than the horizon is in the
// set. So a replay is caught whatever the load, and even when the wall clock jumps back, while
// memory stays bounded by entries_max entries. The price of the bound: when more than
// entries_max stamps arrive within one window, the horizon climbs towards now and a genuine
// frame stamped before it (a late datagram, a sender whose clock lags) is rejected as
// `forgotten` — its sender's retry carries a new stamp.
//
// Pure: time comes in as `now`. Not thread-safe: one owner (a transport's io_context thread).
class ReplayGuard {
public:
    using Clock = std::chrono::system_clock;

    explicit ReplayGuard(ReplayGuardOptions options = {});

    // Admits `stamp`. Errors (all unauthenticated, the detail says which): its time is outside
    // [now - window, now + window] (the detail gives the offset: clocks out of sync?), at or
    // before the horizon, or it was admitted before.
    Status admit(const FrameStamp& stamp, Clock::time_point now);
    // The window check of admit() alone, for the frames of a TCP stream after its stream-open
    // frame (their order is checked by the stream). Errors: unauthenticated, as admit().
    Status check_window(const FrameStamp& stamp, Clock::time_point now);

    const ReplayGuardOptions& options() const noexcept { return options_; }
    const ReplayGuardStats& stats() const noexcept { return stats_; }
    // Stamps remembered now (at most options().entries_max).
    std::size_t size() const noexcept { return seen_.size(); }
    // Stamps at or before this time (ms since the epoch) are rejected; -1 before any left.
    std::int64_t horizon_ms() const noexcept { return horizon_ms_; }

private:
    // The window check; counts too_old and too_new.
    Status within_window(const FrameStamp& stamp, Clock::time_point now);
    // Removes the oldest remembered stamp and raises the horizon to its time.
    void forget_oldest();

    ReplayGuardOptions options_;
    std::set<FrameStamp> seen_;
    std::int64_t horizon_ms_ = -1;
    ReplayGuardStats stats_;
};

}  // namespace chordkv::net
