#include "net/replication_queue.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/admin_codec.hpp"
#include "net/transport.hpp"

namespace chordkv::net {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kWaitMax = 10s;

// What one entry ended with, and how many times it ended (must be exactly once).
struct Outcome {
    int completions = 0;
    std::optional<Status> status;
};

// A loopback replica made from net::Transport: it records every ReplicateWritesRequest and
// answers ReplicateWritesReply (or, with `fail_with` set, an ErrorReply carrying that code).
class ReplicationQueueTest : public ::testing::Test {
protected:
    void SetUp() override {
        for (int attempt = 1;; ++attempt) {
            auto server = Transport::open(io_, HostPort{"127.0.0.1", 0}, TransportOptions{});
            if (server) {
                server_ = std::move(*server);
                break;
            }
            ASSERT_TRUE(attempt < 20 && server.code() == std::errc::address_in_use)
                << server.error().message();
        }
        server_->start(
            nullptr, [this](const std::shared_ptr<Connection>& from, const FrameView& frame) {
                ASSERT_EQ(frame.type, admin_type<ReplicateWritesRequest>());
                auto request = decode_admin<ReplicateWritesRequest>(frame.payload);
                ASSERT_TRUE(request) << request.error().message();
                received_.push_back(*request);
                if (fail_with_) {
                    from->send(encode_admin(
                        ErrorReply{request->request_id, static_cast<int>(*fail_with_), "disk full"},
                        nullptr));
                    return;
                }
                from->send(encode_admin(
                    ReplicateWritesReply{request->request_id, request->entries.size()}, nullptr));
            });
        address_ = "127.0.0.1:" + std::to_string(server_->port());
        pool_ = std::make_unique<PeerPool>(io_, PeerPoolOptions{});
    }

    void TearDown() override {
        queue_.reset();
        pool_.reset();
        server_.reset();
    }

    ReplicationQueue& make_queue(ReplicationQueueOptions options = {}) {
        queue_ = std::make_unique<ReplicationQueue>(io_, *pool_, options);
        return *queue_;
    }

    static SyncEntry entry(int i, std::size_t value_bytes = 1) {
        return SyncEntry{
            "key-" + std::to_string(i),
            WireRecord{static_cast<std::uint64_t>(i + 1), false, std::string(value_bytes, 'v')}};
    }

    static ReplicationQueue::Done record(Outcome& out) {
        return [&out](const Status& status) {
            ++out.completions;
            out.status = status;
        };
    }

    template <class Predicate>
    bool run_until(Predicate done) {
        const auto deadline = Clock::now() + kWaitMax;
        while (!done() && Clock::now() < deadline) {
            if (io_.stopped()) io_.restart();
            io_.run_one_until(deadline);
        }
        return done();
    }

    void run_for(std::chrono::milliseconds d) {
        if (io_.stopped()) io_.restart();
        io_.run_for(d);
    }

    static bool all_done(const std::vector<Outcome>& outcomes) {
        for (const auto& o : outcomes) {
            if (o.completions == 0) return false;
        }
        return true;
    }

    asio::io_context io_;
    std::unique_ptr<Transport> server_;
    std::unique_ptr<PeerPool> pool_;
    std::unique_ptr<ReplicationQueue> queue_;
    std::string address_;
    std::vector<ReplicateWritesRequest> received_;
    std::optional<Errc> fail_with_;
};

TEST_F(ReplicationQueueTest, GathersTheEntriesOfOneTurnIntoOneRequest) {
    constexpr int kEntries = 100;
    auto& queue = make_queue();
    std::vector<Outcome> outcomes(kEntries);
    for (int i = 0; i < kEntries; ++i) queue.add(address_, entry(i), record(outcomes[i]));
    // Nothing completes inside add().
    for (const auto& o : outcomes) EXPECT_EQ(o.completions, 0);
    EXPECT_EQ(queue.queued(), static_cast<std::size_t>(kEntries));
    ASSERT_TRUE(run_until([&] { return all_done(outcomes); }));
    run_for(20ms);  // nothing completes twice
    for (int i = 0; i < kEntries; ++i) {
        ASSERT_EQ(outcomes[i].completions, 1) << i;
        EXPECT_TRUE(*outcomes[i].status) << i << ": " << outcomes[i].status->error().message();
    }
    ASSERT_EQ(received_.size(), 1u);
    ASSERT_EQ(received_[0].entries.size(), static_cast<std::size_t>(kEntries));
    for (int i = 0; i < kEntries; ++i) {
        EXPECT_EQ(received_[0].entries[i].key, entry(i).key);  // in the order added
        EXPECT_EQ(received_[0].entries[i].record.version, entry(i).record.version);
    }
    EXPECT_EQ(queue.stats().entries, static_cast<std::uint64_t>(kEntries));
    EXPECT_EQ(queue.stats().requests, 1u);
    EXPECT_EQ(queue.queued(), 0u);
}

TEST_F(ReplicationQueueTest, AddsOfALaterTurnGoInANewRequest) {
    auto& queue = make_queue();
    Outcome first;
    Outcome second;
    queue.add(address_, entry(1), record(first));
    ASSERT_TRUE(run_until([&] { return first.completions == 1; }));
    queue.add(address_, entry(2), record(second));
    ASSERT_TRUE(run_until([&] { return second.completions == 1; }));
    EXPECT_TRUE(*first.status);
    EXPECT_TRUE(*second.status);
    ASSERT_EQ(received_.size(), 2u);
    EXPECT_EQ(received_[1].entries.size(), 1u);
}

TEST_F(ReplicationQueueTest, SplitsAtTheEntryAndByteBounds) {
    ReplicationQueueOptions options;
    options.request_entries_max = 10;
    options.request_bytes_max = 4096;
    auto& queue = make_queue(options);
    std::vector<Outcome> outcomes(27);
    for (int i = 0; i < 25; ++i) queue.add(address_, entry(i), record(outcomes[i]));
    // Over the byte bound alone: each goes in a request of its own.
    queue.add(address_, entry(25, 5000), record(outcomes[25]));
    queue.add(address_, entry(26, 5000), record(outcomes[26]));
    ASSERT_TRUE(run_until([&] { return all_done(outcomes); }));
    for (const auto& o : outcomes) {
        ASSERT_EQ(o.completions, 1);
        EXPECT_TRUE(*o.status);
    }
    std::vector<std::size_t> sizes;
    int next = 0;
    for (const auto& r : received_) {
        sizes.push_back(r.entries.size());
        for (const auto& e : r.entries) EXPECT_EQ(e.key, entry(next++).key);  // order kept
    }
    EXPECT_EQ(sizes, (std::vector<std::size_t>{10, 10, 5, 1, 1}));
    EXPECT_EQ(queue.stats().requests, 5u);
}

TEST_F(ReplicationQueueTest, ReplicaErrorFailsEveryEntryOfTheRequest) {
    fail_with_ = Errc::storage_error;
    auto& queue = make_queue();
    std::vector<Outcome> outcomes(3);
    for (int i = 0; i < 3; ++i) queue.add(address_, entry(i), record(outcomes[i]));
    ASSERT_TRUE(run_until([&] { return all_done(outcomes); }));
    for (const auto& o : outcomes) {
        ASSERT_EQ(o.completions, 1);
        ASSERT_FALSE(*o.status);
        EXPECT_EQ(o.status->code(), Errc::storage_error);
        EXPECT_NE(o.status->error().message().find("disk full"), std::string::npos);
    }
}

TEST_F(ReplicationQueueTest, EachAddressGetsItsOwnRequestAndOutcome) {
    // A loopback port nothing listens on: bound, then closed.
    asio::ip::tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
    const std::string dead = "127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
    acceptor.close();
    auto& queue = make_queue();
    Outcome live;
    Outcome lost;
    queue.add(address_, entry(1), record(live));
    queue.add(dead, entry(1), record(lost));
    ASSERT_TRUE(run_until([&] { return live.completions == 1 && lost.completions == 1; }));
    EXPECT_TRUE(*live.status);
    ASSERT_FALSE(*lost.status);
    EXPECT_EQ(lost.status->code(), Errc::unreachable);
    EXPECT_EQ(received_.size(), 1u);
}

TEST_F(ReplicationQueueTest, DestroyingTheQueueCompletesWhatItHoldsWithShuttingDown) {
    auto& queue = make_queue();
    Outcome out;
    queue.add(address_, entry(1), record(out));
    queue_.reset();  // before the posted flush ran
    ASSERT_EQ(out.completions, 1);
    EXPECT_EQ(out.status->code(), Errc::shutting_down);
    run_for(50ms);  // the flush finds the queue gone and sends nothing
    EXPECT_EQ(out.completions, 1);
    EXPECT_TRUE(received_.empty());
}

TEST_F(ReplicationQueueTest, AClosedPoolFailsTheEntriesWithShuttingDown) {
    auto& queue = make_queue();
    Outcome out;
    queue.add(address_, entry(1), record(out));
    pool_->close();
    ASSERT_TRUE(run_until([&] { return out.completions == 1; }));
    EXPECT_EQ(out.status->code(), Errc::shutting_down);
}

}  // namespace
}  // namespace chordkv::net
