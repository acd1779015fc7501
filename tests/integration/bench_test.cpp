// chord-bench against a ring of real chordd processes: both pipeline modes send exactly
// --requests requests, every one answered; --pin-clients keeps a client on one process; a
// process that stops answering costs its requests, not the run; bad flags are refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cluster.hpp"

namespace chordkv::testing {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kMembers = 3;
constexpr int kExitUsage = 2;  // chord-bench: bad usage

std::string bench_path() {
    return CHORDKV_CHORD_BENCH_PATH;
}

// The number after `"name":` inside the JSON object that starts at `from`; -1 when absent.
// chord-bench's JSON is flat enough for this: each object's fields are numbers or strings.
double number_after(const std::string& json, std::size_t from, const std::string& name) {
    if (from == std::string::npos) return -1;
    const std::size_t at = json.find("\"" + name + "\":", from);
    if (at == std::string::npos) return -1;
    return std::stod(json.substr(at + name.size() + 3));
}

class BenchIntegration : public ::testing::Test {
protected:
    void SetUp() override {
        ClusterOptions options;
        options.vnodes = 4;
        cluster_ = std::make_unique<Cluster>(options);
        ASSERT_TRUE(cluster_->start(0, -1)) << cluster_->log(0);
        for (std::size_t i = 1; i < kMembers; ++i) {
            ASSERT_TRUE(cluster_->start(i, static_cast<int>(i - 1))) << cluster_->log(i);
        }
        std::string problem;
        ASSERT_TRUE(
            wait_for([&] { return (problem = cluster_->ideal_ring_problem()).empty(); }, 15s))
            << problem << "\n"
            << cluster_->dump();
        for (std::size_t i = 0; i < kMembers; ++i) {
            nodes_ += (i == 0 ? "" : ",") + cluster_->address(i);
        }
    }

    void TearDown() override { cluster_.reset(); }

    struct Outcome {
        int exit_code = -1;
        std::string output;  // stdout and stderr
    };
    // chord-bench with `args` against the ring, to its end (at most 60 s).
    Outcome bench(const std::vector<std::string>& args) {
        std::vector<std::string> argv = {bench_path(), "--nodes", nodes_, "--timeout", "5000"};
        argv.insert(argv.end(), args.begin(), args.end());
        ChildProcess child(argv, dir_.file("bench-" + std::to_string(runs_++) + ".log"));
        const auto code = child.wait(60s);
        return Outcome{code.value_or(-1), child.log()};
    }

    TempDir dir_{"bench-it"};
    std::string nodes_;
    std::unique_ptr<Cluster> cluster_;
    int runs_ = 0;
};

// 2,001 requests from 3 clients of 7 slots: the last batch is partial, so a mode that lost or
// repeated a slot's request would miscount. Every key is written by the warm-up first, so every
// get must find its key.
TEST_F(BenchIntegration, BothPipelineModesSendEveryRequestOnceAndGetAnswers) {
    constexpr std::uint64_t kRequests = 2001;
    constexpr std::uint64_t kKeys = 300;
    for (const std::string mode : {"batch", "window"}) {
        SCOPED_TRACE(mode);
        const Outcome run = bench({"--keys", std::to_string(kKeys), "--warmup-keys", "--clients",
                                   "3", "--pipeline", "7", "--pipeline-mode", mode, "--requests",
                                   std::to_string(kRequests), "--ratio", "1:1", "--json"});
        ASSERT_EQ(run.exit_code, 0) << run.output;
        const std::string& json = run.output;
        EXPECT_NE(json.find("\"pipeline_mode\":\"" + mode + "\""), std::string::npos) << json;
        // The warm-up's object comes first and holds a "put" of its own: read the run's last.
        const std::size_t warmup = json.find("\"warmup\":{");
        const std::size_t get = json.rfind("\"get\":{");
        const std::size_t put = json.rfind("\"put\":{");
        ASSERT_NE(warmup, std::string::npos) << json;
        ASSERT_LT(warmup, get) << json;
        EXPECT_EQ(number_after(json, json.find("\"put\":{", warmup), "count"),
                  static_cast<double>(kKeys));
        const double gets = number_after(json, get, "count");
        const double puts = number_after(json, put, "count");
        EXPECT_EQ(gets + puts, static_cast<double>(kRequests)) << json;
        EXPECT_GT(gets, 0) << json;
        EXPECT_GT(puts, 0) << json;
        EXPECT_EQ(number_after(json, get, "hits"), gets) << json;
        EXPECT_EQ(number_after(json, get, "error_count"), 0) << json;
        EXPECT_EQ(number_after(json, put, "error_count"), 0) << json;
        EXPECT_EQ(number_after(json, json.find("\"total\":{"), "count"),
                  static_cast<double>(kRequests))
            << json;
    }
}

// The processes `json`'s sent_by_process names, with how many requests each was sent.
std::vector<std::pair<std::string, double>> sent_by_process(const std::string& json) {
    std::vector<std::pair<std::string, double>> out;
    const std::string field = "\"sent_by_process\":{";
    std::size_t at = json.find(field);
    if (at == std::string::npos) return out;
    const std::size_t end = json.find('}', at);
    at += field.size();
    while (at < end) {
        const std::size_t name_end = json.find('"', at + 1);
        const std::string name = json.substr(at + 1, name_end - at - 1);
        out.emplace_back(name, std::stod(json.substr(name_end + 2)));
        at = json.find_first_of(",}", name_end);
        if (at == std::string::npos || json[at] == '}') break;
        ++at;
    }
    return out;
}

// --pin-clients: one client draws only keys of one process, so every request goes there and
// none is redirected; without it, one client's keys spread over all three processes.
TEST_F(BenchIntegration, APinnedClientSendsOnlyToItsProcess) {
    const std::vector<std::string> load = {
        "--keys", "600",        "--warmup-keys", "--clients", "1",   "--pipeline",
        "8",      "--requests", "1200",          "--ratio",   "1:0", "--json"};
    std::vector<std::string> pinned_args = load;
    pinned_args.push_back("--pin-clients");
    const Outcome pinned = bench(pinned_args);
    ASSERT_EQ(pinned.exit_code, 0) << pinned.output;
    const auto pinned_sent = sent_by_process(pinned.output);
    ASSERT_EQ(pinned_sent.size(), 1u) << pinned.output;
    EXPECT_EQ(pinned_sent[0].second, 1200) << pinned.output;
    EXPECT_NE(pinned.output.find("\"pin_clients\":true"), std::string::npos) << pinned.output;
    EXPECT_EQ(number_after(pinned.output, pinned.output.rfind("\"get\":{"), "hits"), 1200)
        << pinned.output;
    EXPECT_EQ(number_after(pinned.output, pinned.output.rfind("\"get\":{"), "redirects"), 0)
        << pinned.output;

    const Outcome spread = bench(load);
    ASSERT_EQ(spread.exit_code, 0) << spread.output;
    const auto spread_sent = sent_by_process(spread.output);
    EXPECT_EQ(spread_sent.size(), kMembers) << spread.output;
    double total = 0;
    for (const auto& [address, n] : spread_sent) total += n;
    EXPECT_EQ(total, 1200) << spread.output;
}

// A process that stops answering (SIGSTOP: its connections accept requests it never reads),
// then dies (its connections drop), costs the requests sent to it: they time out after
// --timeout or fail when the connection drops. The other processes keep serving, and the run
// ends on time instead of waiting for answers that never come.
TEST_F(BenchIntegration, AProcessThatStopsAnsweringCostsItsRequestsNotTheRun) {
    const Outcome warm = bench({"--keys", "300", "--warmup-keys", "--requests", "1"});
    ASSERT_EQ(warm.exit_code, 0) << warm.output;
    cluster_->pause(2);
    ChildProcess child({bench_path(), "--nodes", nodes_, "--timeout", "300", "--keys", "300",
                        "--clients", "4", "--pipeline", "4", "--pipeline-mode", "window", "--ratio",
                        "1:0", "--duration", "4", "--json"},
                       dir_.file("bench-stopped.log"));
    // Part of the run against the stopped process, the rest after its death (how much of
    // each does not matter: both must end as asserted below).
    EXPECT_FALSE(wait_for([&] { return !child.running(); }, 1500ms)) << child.log();
    cluster_->kill9(2);
    const auto started = std::chrono::steady_clock::now();
    const auto code = child.wait(30s);
    ASSERT_TRUE(code) << "chord-bench did not end\n" << child.log();
    EXPECT_LT(std::chrono::steady_clock::now() - started, 10s) << child.log();
    const std::string json = child.log();
    EXPECT_EQ(*code, 1) << json;  // some requests failed
    const std::size_t get = json.rfind("\"get\":{");
    ASSERT_NE(get, std::string::npos) << json;
    EXPECT_GT(number_after(json, get, "count"), 100) << json;  // the others kept serving
    EXPECT_GT(number_after(json, get, "error_count"), 0) << json;
    EXPECT_GT(number_after(json, get, "timed_out"), 0) << json;
    const std::size_t errors = json.find("\"errors\":{", get);
    std::cout << "[stopped] gets " << number_after(json, get, "count") << ", errors "
              << json.substr(errors, json.find('}', errors) - errors + 1) << "\n";
}

TEST_F(BenchIntegration, BadFlagsAreRefusedBeforeAnyLoad) {
    const Outcome mode = bench({"--pipeline-mode", "sideways"});
    EXPECT_EQ(mode.exit_code, kExitUsage) << mode.output;
    EXPECT_NE(mode.output.find("--pipeline-mode must be batch or window"), std::string::npos)
        << mode.output;
    const Outcome pin = bench({"--pin-clients", "--keys", "3000000"});
    EXPECT_EQ(pin.exit_code, kExitUsage) << pin.output;
    EXPECT_NE(pin.output.find("--pin-clients needs --keys <= 2097152"), std::string::npos)
        << pin.output;
    const Outcome pipeline = bench({"--pipeline", "0"});
    EXPECT_EQ(pipeline.exit_code, kExitUsage) << pipeline.output;
    EXPECT_NE(pipeline.output.find("--pipeline must be within 1..1024"), std::string::npos)
        << pipeline.output;
}

}  // namespace
}  // namespace chordkv::testing
