#include "net/run_loop.hpp"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <thread>

namespace chordkv::net {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Every handler runs, timers included, and run_busy returns when the io_context is out of
// work, as io.run() does, whatever the spin.
TEST(RunBusy, RunsEveryHandlerAndReturnsWhenOutOfWork) {
    for (const auto spin : {0us, 50us, 5000us}) {
        asio::io_context io(1);
        int posted = 0;
        bool fired = false;
        for (int i = 0; i < 10; ++i) asio::post(io, [&] { ++posted; });
        asio::steady_timer timer(io, 20ms);
        timer.async_wait([&](const boost::system::error_code& ec) { fired = !ec; });
        const auto start = Clock::now();
        run_busy(io, spin);
        EXPECT_EQ(posted, 10) << spin.count();
        EXPECT_TRUE(fired) << spin.count();
        EXPECT_GE(Clock::now() - start, 20ms);
        EXPECT_TRUE(io.stopped());
    }
}

// stop() from a handler ends the run although work remains, during a spin or a sleep.
TEST(RunBusy, StopEndsTheRunThoughWorkRemains) {
    for (const auto spin : {0us, 100us, 1'000'000us}) {
        asio::io_context io(1);
        auto guard = asio::make_work_guard(io);
        asio::steady_timer timer(io, 10ms);
        timer.async_wait([&](const boost::system::error_code&) { io.stop(); });
        const auto start = Clock::now();
        run_busy(io, spin);
        EXPECT_LT(Clock::now() - start, 900ms) << spin.count();
        EXPECT_TRUE(io.stopped());
    }
}

// Bytes arriving from another thread while the loop spins or sleeps are read: a loopback
// request/reply exchange completes, with and without spinning.
TEST(RunBusy, ServesSocketsWhileSpinning) {
    for (const auto spin : {0us, 200us}) {
        asio::io_context io(1);
        asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
        asio::ip::tcp::socket server(io);
        char byte = 0;
        int exchanges = 0;
        std::function<void()> serve = [&] {
            asio::async_read(server, asio::buffer(&byte, 1),
                             [&](const boost::system::error_code& ec, std::size_t) {
                                 if (ec) return;  // the client closed: out of work
                                 asio::write(server, asio::buffer(&byte, 1));
                                 ++exchanges;
                                 serve();
                             });
        };
        acceptor.async_accept(server, [&](const boost::system::error_code& ec) {
            ASSERT_FALSE(ec) << ec.message();
            acceptor.close();
            serve();
        });
        const auto port = acceptor.local_endpoint().port();
        std::thread client([port] {
            asio::io_context client_io;
            asio::ip::tcp::socket s(client_io);
            s.connect({asio::ip::make_address("127.0.0.1"), port});
            for (char c = 0; c < 20; ++c) {
                asio::write(s, asio::buffer(&c, 1));
                char back = -1;
                asio::read(s, asio::buffer(&back, 1));
                EXPECT_EQ(back, c);
                std::this_thread::sleep_for(1ms);  // the server's loop spins, then sleeps
            }
        });
        run_busy(io, spin);
        client.join();
        EXPECT_EQ(exchanges, 20) << spin.count();
    }
}

}  // namespace
}  // namespace chordkv::net
