// RingWalker: runs a RingWalk (node/ring_view.hpp) over a PeerPool, asking every process the
// walk hands out at once (one InfoRequest each). chordd walks the ring this way before it
// places the vnodes of a new data dir; chord-bench refreshes its RingView with it.
//
// Threading: the io_context thread of the pool, like the pool itself.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "net/peer_pool.hpp"
#include "node/ring_view.hpp"

namespace chordkv {

class RingWalker {
public:
    // Receives the finished walk (its vnodes(), answered()).
    using Done = std::function<void(const RingWalk& walk)>;

    // `pool` must outlive the walker. Replies that come after the walker is destroyed are
    // dropped.
    explicit RingWalker(net::PeerPool& pool) : pool_(pool) {}
    RingWalker(const RingWalker&) = delete;
    RingWalker& operator=(const RingWalker&) = delete;

    // Starts `walk`; `done` runs once when it has ended: from a reply's handler, or inline
    // when there is nobody to ask. One walk at a time: false (and nothing starts) while one
    // runs. A walk whose pool is closed ends as every address fails.
    bool start(RingWalk walk, Done done);
    bool running() const noexcept { return walk_.has_value(); }
    // Why the last process that failed to answer did not (address: error), for messages;
    // empty when none failed.
    const std::string& last_failure() const noexcept { return last_failure_; }

private:
    void pump();

    net::PeerPool& pool_;
    std::optional<RingWalk> walk_;
    Done done_;
    std::string last_failure_;
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace chordkv
