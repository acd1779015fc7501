#include "net/peer_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "net/self_connect.hpp"
#include "net/serialization.hpp"
#include "net/transport.hpp"

// A request/reply message that follows the wire contract: the request id is the first field.
namespace chordkv::net::test {
struct EchoMessage {
    std::uint64_t request_id = 0;
    std::string body;
};
}  // namespace chordkv::net::test

namespace boost::serialization {
template <class Archive>
void serialize(Archive& ar, chordkv::net::test::EchoMessage& m, const unsigned int) {
    ar& m.request_id& m.body;
}
}  // namespace boost::serialization

CHORDKV_WIRE_STRUCT(chordkv::net::test::EchoMessage)

namespace chordkv::net {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using test::EchoMessage;
using Clock = std::chrono::steady_clock;

constexpr std::uint8_t kEchoRequest = 40;
constexpr std::uint8_t kEchoReply = 41;
// Bound on every wait in these tests; they finish far sooner unless something is broken.
constexpr auto kWaitMax = 10s;

// What one call ended with, and how many times it ended (must be exactly once).
struct Outcome {
    int completions = 0;
    std::optional<Result<Frame>> result;
};

// A loopback server made from net::Transport plus a pool, all on one io_context run by the
// test thread. The server's behaviour is `on_request_` (echo by default).
class PeerPoolTest : public ::testing::Test {
protected:
    using RequestHandler =
        std::function<void(const std::shared_ptr<Connection>&, const FrameView&)>;

    void SetUp() override { start_server(); }

    void start_server(std::string cluster_key = {}) {
        if (server_) server_->close();
        TransportOptions options;
        options.cluster_key = std::move(cluster_key);
        auto server = open_server(options);
        ASSERT_TRUE(server) << server.error().message();
        server_ = std::move(*server);
        server_->start(nullptr, [this](const std::shared_ptr<Connection>& from,
                                       const FrameView& frame) { on_request_(from, frame); });
        address_ = "127.0.0.1:" + std::to_string(server_->port());
    }

    // Transport::open on port 0 binds UDP to a free port, then TCP to the same number, which an
    // outgoing connection may hold: try again a few times.
    Result<std::unique_ptr<Transport>> open_server(const TransportOptions& options) {
        for (int attempt = 1;; ++attempt) {
            auto server = Transport::open(io_, HostPort{"127.0.0.1", 0}, options);
            if (server || attempt == 20 || server.code() != std::errc::address_in_use) {
                return server;
            }
        }
    }

    const std::string* server_key() const {
        const auto& key = server_->options().cluster_key;
        return key.empty() ? nullptr : &key;
    }

    // The reply the echo server sends: the request's payload, unchanged, as kEchoReply.
    std::string echo_of(const FrameView& frame) const {
        return encode_frame(kEchoReply, frame.payload, server_key());
    }

    std::unique_ptr<PeerPool> make_pool(PeerPoolOptions options = {}) {
        return std::make_unique<PeerPool>(io_, std::move(options));
    }

    // Calls `address` with an EchoMessage carrying `body`; the outcome lands in `out`.
    static void call(PeerPool& pool, const std::string& address, const std::string& body,
                     Outcome& out, std::optional<std::chrono::milliseconds> timeout = {}) {
        const std::string* key = pool.key();
        pool.call(
            address,
            [&body, key](std::uint64_t id) {
                return encode_message_frame(kEchoRequest, EchoMessage{id, body}, key);
            },
            [&out](Result<Frame> r) {
                ++out.completions;
                out.result = std::move(r);
            },
            timeout);
    }

    // Runs the io_context until `done()` or kWaitMax; returns done().
    template <class Predicate>
    bool run_until(Predicate done, std::chrono::milliseconds limit = kWaitMax) {
        const auto deadline = Clock::now() + limit;
        while (!done() && Clock::now() < deadline) {
            if (io_.stopped()) io_.restart();
            io_.run_one_until(deadline);
        }
        return done();
    }

    // Runs the io_context for `d`, whatever happens.
    void run_for(std::chrono::milliseconds d) {
        if (io_.stopped()) io_.restart();
        io_.run_for(d);
    }

    static std::string body_of(const Result<Frame>& r) {
        auto message = decode_payload<EchoMessage>(r->payload);
        return message ? message->body : "<undecodable: " + message.error().message() + ">";
    }

    // A loopback port nothing listens on: bound, then closed.
    std::uint16_t closed_port() {
        asio::ip::tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
        const auto port = acceptor.local_endpoint().port();
        acceptor.close();
        return port;
    }

    asio::io_context io_;
    std::unique_ptr<Transport> server_;
    std::string address_;
    RequestHandler on_request_ = [this](const std::shared_ptr<Connection>& from,
                                        const FrameView& frame) { from->send(echo_of(frame)); };
};

// The requests a holding server has received, to answer (or not) later.
//
// Servers in these tests write at most once to a connection that the pool is about to drop,
// so that they test the pool, not the transport's writes racing a disconnect.
struct Held {
    std::shared_ptr<Connection> connection;
    std::string payload;
};

TEST_F(PeerPoolTest, PipelinesThousandRequestsOnOneConnection) {
    constexpr int kCalls = 1000;
    std::vector<Outcome> outcomes(kCalls);
    std::vector<std::string> bodies(kCalls);
    auto pool = make_pool();
    for (int i = 0; i < kCalls; ++i) {
        bodies[i] = "payload-" + std::to_string(i);
        call(*pool, address_, bodies[i], outcomes[i]);
    }
    EXPECT_EQ(pool->inflight(address_), static_cast<std::size_t>(kCalls));
    ASSERT_TRUE(run_until([&] { return pool->stats().replies == kCalls; }));
    run_for(20ms);  // nothing completes twice
    for (int i = 0; i < kCalls; ++i) {
        ASSERT_EQ(outcomes[i].completions, 1) << i;
        ASSERT_TRUE(*outcomes[i].result) << i << ": " << outcomes[i].result->error().message();
        EXPECT_EQ((*outcomes[i].result)->type, kEchoReply);
        EXPECT_EQ(body_of(*outcomes[i].result), bodies[i]);
    }
    EXPECT_EQ(pool->stats().connects, 1u);
    EXPECT_EQ(pool->stats().requests, static_cast<std::uint64_t>(kCalls));
    EXPECT_EQ(server_->stats().tcp_connections_accepted, 1u);
    EXPECT_EQ(pool->inflight(address_), 0u);
}

TEST_F(PeerPoolTest, RepliesEncodedIntoTheQueueArriveWholeAndInOrder) {
    // The server answers every third request with send() of a frame of its own and the others
    // with send_message(), which encodes into the connection's queue; one request in 50 carries
    // 200 KB, so a large frame sometimes is the queue (taken whole) and sometimes is appended
    // behind small ones, and the buffers it grew are let go after its write.
    constexpr int kCalls = 1000;
    int received = 0;
    on_request_ = [&](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        auto message = decode_payload<EchoMessage>(frame.payload);
        ASSERT_TRUE(message) << message.error().message();
        if (received++ % 3 == 0) {
            from->send(encode_message_frame(kEchoReply, *message, server_key()));
        } else {
            from->send_message(kEchoReply, *message, server_key());
        }
    };
    std::vector<Outcome> outcomes(kCalls);
    std::vector<std::string> bodies(kCalls);
    auto pool = make_pool();
    for (int i = 0; i < kCalls; ++i) {
        const std::size_t size = i % 50 == 7 ? 200 * 1024 : static_cast<std::size_t>(i % 300);
        bodies[i] = std::string(size, static_cast<char>('a' + i % 26)) + std::to_string(i);
        call(*pool, address_, bodies[i], outcomes[i]);
    }
    ASSERT_TRUE(run_until([&] { return pool->stats().replies == kCalls; }));
    run_for(20ms);
    for (int i = 0; i < kCalls; ++i) {
        ASSERT_EQ(outcomes[i].completions, 1) << i;
        ASSERT_TRUE(*outcomes[i].result) << i << ": " << outcomes[i].result->error().message();
        ASSERT_EQ(body_of(*outcomes[i].result), bodies[i]) << i;
    }
    EXPECT_EQ(pool->stats().replies_unmatched, 0u);
    EXPECT_EQ(server_->stats().tcp_connections_dropped, 0u);
}

TEST_F(PeerPoolTest, AConnectionThatDoesNotReadIsDroppedAtItsQueueBound) {
    // A client that sends requests and never reads: the replies fill the socket buffers, then
    // the connection's queue, and at connection_queue_frames_max frames it is dropped rather
    // than left to hold the server's memory.
    TransportOptions options;
    options.connection_queue_frames_max = 16;
    auto server = open_server(options);
    ASSERT_TRUE(server) << server.error().message();
    const std::string big(256 * 1024, 'r');
    (*server)->start(nullptr, [&big](const std::shared_ptr<Connection>& from, const FrameView&) {
        from->send_message(kEchoReply, EchoMessage{1, big}, nullptr);
    });
    asio::ip::tcp::socket client(io_);
    client.connect({asio::ip::make_address("127.0.0.1"), (*server)->port()});
    std::string requests;
    for (int i = 0; i < 200; ++i) {
        requests += encode_message_frame(kEchoRequest, EchoMessage{std::uint64_t(i), "x"}, nullptr);
    }
    asio::write(client, asio::buffer(requests));
    ASSERT_TRUE(run_until([&] { return (*server)->stats().tcp_connections_dropped == 1; }))
        << "frames received: " << (*server)->stats().tcp_frames_received;
    EXPECT_LT((*server)->stats().tcp_frames_received, 200u);
}

TEST_F(PeerPoolTest, TheFramesOfOneReadAreShownAheadThenHandledAndABadOneEndsThem) {
    // 40 requests and then bytes that are no frame, written before the server reads: one read.
    // on_frames_ahead sees the first 32, then on_frame each of them in order, then the same
    // for the other 8, and only then is the connection dropped for the bad bytes.
    auto server = open_server(TransportOptions{});
    ASSERT_TRUE(server) << server.error().message();
    std::vector<std::string> log;
    (*server)->on_frames_ahead([&log](const std::vector<FrameView>& frames) {
        std::string line = "ahead";
        for (const FrameView& frame : frames) {
            auto message = decode_payload<EchoMessage>(frame.payload);
            line += " " + (message ? message->body : std::string("?"));
        }
        log.push_back(line);
    });
    (*server)->start(nullptr, [&log](const std::shared_ptr<Connection>&, const FrameView& frame) {
        auto message = decode_payload<EchoMessage>(frame.payload);
        log.push_back("frame " + (message ? message->body : std::string("?")));
    });
    asio::ip::tcp::socket client(io_);
    client.connect({asio::ip::make_address("127.0.0.1"), (*server)->port()});
    constexpr int kFrames = 40;
    constexpr int kAheadMax = 32;
    std::string bytes;
    for (int i = 0; i < kFrames; ++i) {
        bytes += encode_message_frame(
            kEchoRequest, EchoMessage{std::uint64_t(i + 1), std::to_string(i)}, nullptr);
    }
    bytes += std::string(32, 'X');
    asio::write(client, asio::buffer(bytes));
    ASSERT_TRUE(run_until([&] { return (*server)->stats().tcp_connections_dropped == 1; }));
    std::vector<std::string> expected;
    for (int first = 0; first < kFrames; first += kAheadMax) {
        const int end = std::min(kFrames, first + kAheadMax);
        std::string ahead = "ahead";
        for (int i = first; i < end; ++i) ahead += " " + std::to_string(i);
        expected.push_back(ahead);
        for (int i = first; i < end; ++i) expected.push_back("frame " + std::to_string(i));
    }
    EXPECT_EQ(log, expected);
    EXPECT_EQ((*server)->stats().tcp_frames_received, std::uint64_t{kFrames});
    EXPECT_EQ((*server)->stats().frames_dropped, 1u);
}

TEST_F(PeerPoolTest, MatchesRepliesSentOutOfOrder) {
    // The server answers in batches of 7, each batch reversed; the last, partial batch is
    // flushed when the final request arrives.
    constexpr int kCalls = 1000;
    constexpr std::size_t kBatch = 7;
    std::vector<Held> batch;
    int received = 0;
    on_request_ = [&](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        batch.push_back({from, std::string(frame.payload)});
        ++received;
        if (batch.size() == kBatch || received == kCalls) {
            for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
                it->connection->send(encode_frame(kEchoReply, it->payload, server_key()));
            }
            batch.clear();
        }
    };
    std::vector<Outcome> outcomes(kCalls);
    std::vector<std::string> bodies(kCalls);
    auto pool = make_pool();
    for (int i = 0; i < kCalls; ++i) {
        bodies[i] = std::string(static_cast<std::size_t>(i % 50), 'x') + std::to_string(i);
        call(*pool, address_, bodies[i], outcomes[i]);
    }
    ASSERT_TRUE(run_until([&] { return pool->stats().replies == kCalls; }));
    run_for(20ms);
    for (int i = 0; i < kCalls; ++i) {
        ASSERT_EQ(outcomes[i].completions, 1) << i;
        ASSERT_TRUE(*outcomes[i].result) << i;
        EXPECT_EQ(body_of(*outcomes[i].result), bodies[i]) << i;
    }
    EXPECT_EQ(pool->stats().replies_unmatched, 0u);
}

TEST_F(PeerPoolTest, TimesOutUnansweredRequestAndIgnoresLateReply) {
    std::vector<Held> held;
    on_request_ = [&](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        held.push_back({from, std::string(frame.payload)});
    };
    Outcome slow;
    Outcome fast;
    auto pool = make_pool();
    const auto start = Clock::now();
    call(*pool, address_, "never answered", slow, 150ms);
    ASSERT_TRUE(run_until([&] { return slow.completions > 0; }));
    const auto elapsed = Clock::now() - start;
    ASSERT_TRUE(slow.result && !*slow.result);
    EXPECT_EQ(slow.result->code(), Errc::timed_out) << slow.result->error().message();
    EXPECT_GE(elapsed, 150ms);
    EXPECT_LT(elapsed, 2s);
    EXPECT_EQ(pool->stats().timeouts, 1u);
    ASSERT_EQ(held.size(), 1u);

    // The late answer is counted and ignored; the connection stays up and keeps working.
    held[0].connection->send(encode_frame(kEchoReply, held[0].payload, server_key()));
    ASSERT_TRUE(run_until([&] { return pool->stats().replies_unmatched == 1; }));
    EXPECT_EQ(slow.completions, 1);
    on_request_ = [this](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        from->send(echo_of(frame));
    };
    call(*pool, address_, "answered", fast);
    ASSERT_TRUE(run_until([&] { return fast.completions > 0; }));
    ASSERT_TRUE(*fast.result) << fast.result->error().message();
    EXPECT_EQ(body_of(*fast.result), "answered");
    EXPECT_EQ(pool->stats().connects, 1u);
    EXPECT_EQ(slow.completions, 1);
}

TEST_F(PeerPoolTest, EarlierDeadlineRearmsTheTimer) {
    on_request_ = [](const std::shared_ptr<Connection>&, const FrameView&) {};
    Outcome late;
    Outcome early;
    auto pool = make_pool();
    call(*pool, address_, "late", late, 3000ms);
    call(*pool, address_, "early", early, 100ms);
    const auto start = Clock::now();
    ASSERT_TRUE(run_until([&] { return early.completions > 0; }));
    EXPECT_LT(Clock::now() - start, 2s);
    EXPECT_EQ(early.result->code(), Errc::timed_out);
    EXPECT_EQ(late.completions, 0);
    EXPECT_EQ(pool->inflight(address_), 1u);
    pool->close();
    EXPECT_EQ(late.completions, 1);
    EXPECT_EQ(late.result->code(), Errc::shutting_down);
}

TEST_F(PeerPoolTest, ConnectionRefusedIsUnreachable) {
    const std::string nobody = "127.0.0.1:" + std::to_string(closed_port());
    std::vector<Outcome> outcomes(3);
    auto pool = make_pool();
    const auto start = Clock::now();
    for (auto& out : outcomes) call(*pool, nobody, "hello", out);
    ASSERT_TRUE(run_until([&] {
        return std::all_of(outcomes.begin(), outcomes.end(),
                           [](const Outcome& o) { return o.completions > 0; });
    }));
    EXPECT_LT(Clock::now() - start, pool->options().connect_timeout);
    for (const auto& out : outcomes) {
        EXPECT_EQ(out.completions, 1);
        EXPECT_EQ(out.result->code(), Errc::unreachable) << out.result->error().message();
    }
    EXPECT_EQ(pool->stats().connect_failures, 1u);
    EXPECT_EQ(pool->peers(), 0u);
}

// A socket bound to a port nothing listens on and connected to that same port is connected to
// itself (TCP simultaneous open), which is what a peer reconnecting to a dead node can be
// handed by the kernel. connected_to_itself() must tell it from a real connection.
TEST_F(PeerPoolTest, ASocketConnectedToItselfIsRecognised) {
    const asio::ip::tcp::endpoint nobody(asio::ip::make_address("127.0.0.1"), closed_port());
    asio::ip::tcp::socket self(io_);
    self.open(asio::ip::tcp::v4());
    self.set_option(asio::socket_base::reuse_address(true));
    self.bind(nobody);
    boost::system::error_code ec;
    self.connect(nobody, ec);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_TRUE(connected_to_itself(self));

    asio::ip::tcp::socket real(io_);
    real.connect({asio::ip::make_address("127.0.0.1"), server_->port()}, ec);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_FALSE(connected_to_itself(real));
    asio::ip::tcp::socket unconnected(io_);
    EXPECT_FALSE(connected_to_itself(unconnected));
}

TEST_F(PeerPoolTest, ServerClosingConnectionFailsPendingAndNextCallReconnects) {
    constexpr int kCalls = 10;
    int seen = 0;
    on_request_ = [&](const std::shared_ptr<Connection>& from, const FrameView&) {
        if (++seen == kCalls) from->close();
    };
    std::vector<Outcome> outcomes(kCalls);
    Outcome again;
    auto pool = make_pool();
    for (auto& out : outcomes) call(*pool, address_, "doomed", out);
    ASSERT_TRUE(run_until([&] {
        return std::all_of(outcomes.begin(), outcomes.end(),
                           [](const Outcome& o) { return o.completions > 0; });
    }));
    for (const auto& out : outcomes) {
        EXPECT_EQ(out.completions, 1);
        EXPECT_EQ(out.result->code(), Errc::unreachable) << out.result->error().message();
    }
    EXPECT_EQ(pool->stats().dropped_connections, 1u);
    EXPECT_EQ(pool->peers(), 0u);

    on_request_ = [this](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        from->send(echo_of(frame));
    };
    call(*pool, address_, "again", again);
    ASSERT_TRUE(run_until([&] { return again.completions > 0; }));
    ASSERT_TRUE(*again.result) << again.result->error().message();
    EXPECT_EQ(body_of(*again.result), "again");
    EXPECT_EQ(pool->stats().connects, 2u);
    EXPECT_EQ(server_->stats().tcp_connections_accepted, 2u);
}

TEST_F(PeerPoolTest, BusyWhenInflightLimitIsReached) {
    std::vector<Held> held;
    on_request_ = [&](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        held.push_back({from, std::string(frame.payload)});
    };
    PeerPoolOptions options;
    options.inflight_per_peer_max = 8;
    std::vector<Outcome> outcomes(9);
    Outcome next;
    auto pool = make_pool(options);
    for (auto& out : outcomes) call(*pool, address_, "x", out);
    // The refusal is delivered through the io_context, never from inside call().
    EXPECT_EQ(outcomes[8].completions, 0);
    ASSERT_TRUE(run_until([&] { return outcomes[8].completions > 0 && held.size() == 8; }));
    EXPECT_EQ(outcomes[8].result->code(), Errc::busy);
    EXPECT_EQ(pool->stats().busy, 1u);
    EXPECT_EQ(pool->stats().requests, 8u);

    // Once a reply frees a slot, the next call is accepted.
    held[0].connection->send(encode_frame(kEchoReply, held[0].payload, server_key()));
    ASSERT_TRUE(run_until([&] { return outcomes[0].completions > 0; }));
    ASSERT_TRUE(*outcomes[0].result);
    call(*pool, address_, "y", next);
    ASSERT_TRUE(run_until([&] { return held.size() == 9; }));
    EXPECT_EQ(next.completions, 0);
    EXPECT_EQ(pool->stats().busy, 1u);
    pool->close();
    EXPECT_EQ(next.result->code(), Errc::shutting_down);
}

TEST_F(PeerPoolTest, SameClusterKeyWorks) {
    const std::string key = "0123456789abcdef-shared-secret";
    start_server(key);
    PeerPoolOptions options;
    options.cluster_key = key;
    Outcome out;
    auto pool = make_pool(options);
    call(*pool, address_, "authenticated", out);
    ASSERT_TRUE(run_until([&] { return out.completions > 0; }));
    ASSERT_TRUE(*out.result) << out.result->error().message();
    EXPECT_EQ(body_of(*out.result), "authenticated");
    EXPECT_EQ(server_->stats().frames_unauthenticated, 0u);
}

TEST_F(PeerPoolTest, DifferentClusterKeysFail) {
    start_server("0123456789abcdef-server-secret");
    struct Case {
        const char* name;
        std::string pool_key;
    };
    for (const Case& c :
         {Case{"other key", "0123456789abcdef-client-secret"}, Case{"no key", std::string()}}) {
        SCOPED_TRACE(c.name);
        PeerPoolOptions options;
        options.cluster_key = c.pool_key;
        Outcome out;
        auto pool = make_pool(options);
        call(*pool, address_, "let me in", out);
        ASSERT_TRUE(run_until([&] { return out.completions > 0; }));
        ASSERT_FALSE(*out.result);
        const auto code = out.result->code();
        EXPECT_TRUE(code == Errc::unreachable || code == Errc::unauthenticated)
            << out.result->error().message();
        run_for(20ms);
        EXPECT_EQ(out.completions, 1);
    }
    EXPECT_EQ(server_->stats().frames_unauthenticated, 2u);
}

TEST_F(PeerPoolTest, KeyedPoolRejectsUntaggedReply) {
    // Both sides have the key, but the server answers with an untagged frame.
    const std::string key = "0123456789abcdef-shared-secret";
    start_server(key);
    on_request_ = [](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        from->send(encode_frame(kEchoReply, frame.payload, nullptr));
    };
    PeerPoolOptions options;
    options.cluster_key = key;
    Outcome out;
    auto pool = make_pool(options);
    call(*pool, address_, "tag me", out);
    ASSERT_TRUE(run_until([&] { return out.completions > 0; }));
    ASSERT_FALSE(*out.result);
    EXPECT_EQ(out.result->code(), Errc::unauthenticated) << out.result->error().message();
    EXPECT_EQ(pool->stats().dropped_connections, 1u);
}

TEST_F(PeerPoolTest, MalformedRepliesDropTheConnection) {
    struct Case {
        const char* name;
        std::string reply;
    };
    for (const Case& c :
         {Case{"bad magic", std::string(32, 'X')},
          Case{"payload shorter than a request id", encode_frame(kEchoReply, "abc", nullptr)}}) {
        SCOPED_TRACE(c.name);
        // One bad reply, once all three requests are in.
        const std::string reply = c.reply;
        int seen = 0;
        on_request_ = [reply, &seen](const std::shared_ptr<Connection>& from, const FrameView&) {
            if (++seen == 3) from->send(reply);
        };
        std::vector<Outcome> outcomes(3);
        auto pool = make_pool();
        for (auto& out : outcomes) call(*pool, address_, "hi", out);
        ASSERT_TRUE(run_until([&] {
            return std::all_of(outcomes.begin(), outcomes.end(),
                               [](const Outcome& o) { return o.completions > 0; });
        }));
        for (const auto& out : outcomes) {
            EXPECT_EQ(out.completions, 1);
            EXPECT_EQ(out.result->code(), Errc::malformed_message) << out.result->error().message();
        }
        EXPECT_EQ(pool->stats().dropped_connections, 1u);
        EXPECT_EQ(pool->peers(), 0u);
    }
}

TEST_F(PeerPoolTest, CloseFailsPendingWithShuttingDown) {
    std::vector<Held> held;
    on_request_ = [&](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        held.push_back({from, std::string(frame.payload)});
    };
    std::vector<Outcome> outcomes(5);
    Outcome after;
    auto pool = make_pool();
    for (auto& out : outcomes) call(*pool, address_, "pending", out);
    ASSERT_TRUE(run_until([&] { return held.size() == outcomes.size(); }));
    pool->close();
    for (const auto& out : outcomes) {
        EXPECT_EQ(out.completions, 1);  // inline, from close()
        EXPECT_EQ(out.result->code(), Errc::shutting_down);
    }
    EXPECT_EQ(pool->peers(), 0u);

    call(*pool, address_, "too late", after);
    EXPECT_EQ(after.completions, 0);
    ASSERT_TRUE(run_until([&] { return after.completions > 0; }));
    EXPECT_EQ(after.result->code(), Errc::shutting_down);

    // The server sees the connection go; nothing completes twice.
    ASSERT_TRUE(run_until([&] {
        return std::none_of(held.begin(), held.end(),
                            [](const Held& h) { return h.connection->open(); });
    }));
    for (const auto& out : outcomes) EXPECT_EQ(out.completions, 1);
}

TEST_F(PeerPoolTest, DestroyingThePoolWithOperationsQueuedIsSafe) {
    // Destroyed while connecting, before the io_context ran at all.
    Outcome connecting;
    {
        auto pool = make_pool();
        call(*pool, address_, "connecting", connecting);
    }
    EXPECT_EQ(connecting.completions, 1);
    EXPECT_EQ(connecting.result->code(), Errc::shutting_down);

    // Destroyed with requests in flight, then the io_context stopped, restarted and run.
    std::vector<Held> held;
    on_request_ = [&](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        held.push_back({from, std::string(frame.payload)});
    };
    Outcome in_flight;
    Outcome refused;
    {
        auto pool = make_pool();
        call(*pool, address_, "in flight", in_flight);
        call(*pool, "127.0.0.1:" + std::to_string(closed_port()), "refused", refused);
        ASSERT_TRUE(run_until([&] { return held.size() == 1; }));
        io_.stop();
    }
    EXPECT_EQ(in_flight.completions, 1);
    EXPECT_EQ(refused.completions, 1);
    // The aborted read, the refused connect and the timer of the destroyed pool run now.
    run_for(50ms);
    EXPECT_EQ(in_flight.completions, 1);
    EXPECT_EQ(refused.completions, 1);
}

TEST_F(PeerPoolTest, HandlerMayDestroyThePool) {
    // The four replies arrive together (one write), so they are dispatched from one read.
    std::string replies;
    int seen = 0;
    on_request_ = [&](const std::shared_ptr<Connection>& from, const FrameView& frame) {
        replies += echo_of(frame);
        if (++seen == 4) from->send(replies);
    };
    std::vector<int> completions(4, 0);
    auto pool = make_pool();
    const std::string* key = pool->key();
    for (std::size_t i = 0; i < completions.size(); ++i) {
        pool->call(
            address_,
            [key](std::uint64_t id) {
                return encode_message_frame(kEchoRequest, EchoMessage{id, "x"}, key);
            },
            [&, i](Result<Frame> r) {
                ++completions[i];
                if (i == 0) {
                    EXPECT_TRUE(r);
                    pool.reset();  // the others fail with shutting_down, inline
                } else {
                    EXPECT_EQ(r.code(), Errc::shutting_down);
                }
            });
    }
    ASSERT_TRUE(run_until([&] { return completions[0] > 0; }));
    EXPECT_FALSE(pool);
    run_for(50ms);
    EXPECT_EQ(completions, std::vector<int>(4, 1));
}

TEST_F(PeerPoolTest, InvalidAddressIsInvalidArgument) {
    Outcome out;
    auto pool = make_pool();
    call(*pool, "no-port-here", "x", out);
    EXPECT_EQ(out.completions, 0);
    ASSERT_TRUE(run_until([&] { return out.completions > 0; }));
    EXPECT_EQ(out.result->code(), Errc::invalid_argument);
    EXPECT_EQ(pool->peers(), 0u);
}

TEST_F(PeerPoolTest, ResolvesHostNames) {
    Outcome out;
    auto pool = make_pool();
    call(*pool, "localhost:" + std::to_string(server_->port()), "by name", out);
    ASSERT_TRUE(run_until([&] { return out.completions > 0; }));
    ASSERT_TRUE(*out.result) << out.result->error().message();
    EXPECT_EQ(body_of(*out.result), "by name");
}

TEST_F(PeerPoolTest, PeersMaxClosesTheLeastRecentlyUsedIdleConnection) {
    // A second server, so that there are two addresses.
    auto second = open_server(TransportOptions{});
    ASSERT_TRUE(second) << second.error().message();
    (*second)->start(nullptr, [](const std::shared_ptr<Connection>& from, const FrameView& f) {
        from->send(encode_frame(kEchoReply, f.payload, nullptr));
    });
    const std::string second_address = "127.0.0.1:" + std::to_string((*second)->port());

    PeerPoolOptions options;
    options.peers_max = 1;
    Outcome first;
    Outcome other;
    Outcome blocked;
    Outcome refused;
    auto pool = make_pool(options);
    call(*pool, address_, "one", first);
    ASSERT_TRUE(run_until([&] { return first.completions > 0; }));
    ASSERT_TRUE(*first.result);

    // The first connection is idle: it makes room for the second address.
    call(*pool, second_address, "two", other);
    ASSERT_TRUE(run_until([&] { return other.completions > 0; }));
    ASSERT_TRUE(*other.result) << other.result->error().message();
    EXPECT_EQ(pool->peers(), 1u);

    // With a call pending on the only connection, a new address is refused.
    (*second)->close();
    on_request_ = [](const std::shared_ptr<Connection>&, const FrameView&) {};
    call(*pool, address_, "held", blocked);
    call(*pool, second_address, "no room", refused);
    ASSERT_TRUE(run_until([&] { return refused.completions > 0; }));
    EXPECT_EQ(refused.result->code(), Errc::busy);
    EXPECT_EQ(blocked.completions, 0);
    pool->close();
    EXPECT_EQ(blocked.completions, 1);
}

}  // namespace
}  // namespace chordkv::net
