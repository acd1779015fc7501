// Running an io_context with busy polling, for latency-sensitive deployments with a core to
// spare: after its handlers have run, the thread keeps polling for `spin` before it blocks in
// the kernel, so that a request or reply arriving within that time is handled without the
// sleep and wake-up (tens of microseconds on a virtual machine, most of a loopback round
// trip). The cost is CPU: the thread runs flat out while it spins.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>

namespace chordkv::net {

// Runs `io` until it is stopped or out of work, as io.run() does. With `spin` zero it is
// io.run(); otherwise, whenever nothing is ready, it polls for up to `spin` before blocking.
inline void run_busy(boost::asio::io_context& io, std::chrono::microseconds spin) {
    if (spin.count() <= 0) {
        io.run();
        return;
    }
    using Clock = std::chrono::steady_clock;
    while (!io.stopped()) {
        if (io.poll() > 0) continue;
        if (io.stopped()) return;
        const auto until = Clock::now() + spin;
        bool handled = false;
        while (!handled && !io.stopped() && Clock::now() < until) handled = io.poll() > 0;
        if (!handled && !io.stopped()) io.run_one();
    }
}

}  // namespace chordkv::net
