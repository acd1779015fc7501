#include "net/cluster_key.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <fstream>
#include <iterator>
#include <random>

namespace chordkv::net {

Result<std::string> read_cluster_key_file(const std::string& path) {
    using R = Result<std::string>;
    std::ifstream file(path, std::ios::binary);
    if (!file) return R(Errc::invalid_argument, "cannot read cluster key file '" + path + "'");
    std::string key;
    key.assign(std::istreambuf_iterator<char>(file), {});
    if (key.size() > kClusterKeyBytesMax) {
        return R(Errc::invalid_argument, "cluster key file '" + path + "' is larger than " +
                                             std::to_string(kClusterKeyBytesMax) + " bytes");
    }
    if (!key.empty() && key.back() == '\n') key.pop_back();
    if (key.size() < kClusterKeyBytesMin) {
        return R(Errc::invalid_argument, "cluster key in '" + path + "' is " +
                                             std::to_string(key.size()) + " bytes; use at least " +
                                             std::to_string(kClusterKeyBytesMin) + " random bytes");
    }
    return key;
}

namespace {

// Milliseconds since the epoch of `t`.
std::int64_t epoch_ms(ReplayGuard::Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::uint64_t draw_sender_id() {
    std::uint64_t id = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) {
        // OpenSSL's generator failed (no entropy source): the sender id only has to differ
        // between processes, which the OS's generator is good enough for.
        std::random_device device;
        id = (std::uint64_t{device()} << 32) ^ device();
    }
    return id;
}

std::atomic<std::uint64_t> g_next_sequence{0};

}  // namespace

std::uint64_t frame_sender_id() {
    static const std::uint64_t id = draw_sender_id();
    return id;
}

FrameStamp next_frame_stamp() {
    FrameStamp stamp;
    stamp.sender = frame_sender_id();
    stamp.sequence = g_next_sequence.fetch_add(1, std::memory_order_relaxed);
    stamp.sent_at_ms = static_cast<std::uint64_t>(epoch_ms(std::chrono::system_clock::now()));
    return stamp;
}

ReplayGuard::ReplayGuard(ReplayGuardOptions options) : options_(options) {
    assert(options_.entries_max >= 1 && options_.window.count() >= 0);
}

Status ReplayGuard::within_window(const FrameStamp& stamp, Clock::time_point now) {
    const std::int64_t now_ms = epoch_ms(now);
    const std::int64_t window_ms = options_.window.count();
    const auto describe = [&](const char* what, std::uint64_t by_ms) {
        return Status(Errc::unauthenticated,
                      std::string("frame stamped ") + std::to_string(by_ms) + " ms " + what +
                          " this node's clock, outside the replay window of " +
                          std::to_string(window_ms) + " ms (replayed, or clocks out of sync?)");
    };
    if (stamp.sent_at_ms > static_cast<std::uint64_t>(now_ms) &&
        stamp.sent_at_ms - static_cast<std::uint64_t>(now_ms) >
            static_cast<std::uint64_t>(window_ms)) {
        ++stats_.too_new;
        return describe("ahead of", stamp.sent_at_ms - static_cast<std::uint64_t>(now_ms));
    }
    if (static_cast<std::int64_t>(stamp.sent_at_ms) < now_ms - window_ms) {
        ++stats_.too_old;
        return describe("behind", static_cast<std::uint64_t>(now_ms) - stamp.sent_at_ms);
    }
    return Status();
}

Status ReplayGuard::check_window(const FrameStamp& stamp, Clock::time_point now) {
    Status in_window = within_window(stamp, now);
    if (in_window) ++stats_.admitted;
    return in_window;
}

Status ReplayGuard::admit(const FrameStamp& stamp, Clock::time_point now) {
    if (Status in_window = within_window(stamp, now); !in_window) return in_window;
    const auto at = static_cast<std::int64_t>(stamp.sent_at_ms);  // in the window: no overflow
    // Stamps that fell out of the window can never be admitted again: forget them.
    const std::int64_t oldest_ms = epoch_ms(now) - options_.window.count();
    while (!seen_.empty() && static_cast<std::int64_t>(seen_.begin()->sent_at_ms) < oldest_ms) {
        forget_oldest();
    }
    if (at <= horizon_ms_) {
        ++stats_.forgotten;
        return Status(Errc::unauthenticated,
                      "frame stamped at or before the oldest time the replay cache still "
                      "remembers (it is full: " +
                          std::to_string(options_.entries_max) + " stamps)");
    }
    if (!seen_.insert(stamp).second) {
        ++stats_.duplicates;
        return Status(Errc::unauthenticated,
                      "replayed frame: sender " + std::to_string(stamp.sender) + " sequence " +
                          std::to_string(stamp.sequence) + " was seen before");
    }
    if (seen_.size() > options_.entries_max) forget_oldest();
    ++stats_.admitted;
    return Status();
}

void ReplayGuard::forget_oldest() {
    const auto oldest = seen_.begin();
    horizon_ms_ = std::max(horizon_ms_, static_cast<std::int64_t>(oldest->sent_at_ms));
    seen_.erase(oldest);
}

}  // namespace chordkv::net
