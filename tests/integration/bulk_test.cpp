// chordctl load and dump against real processes: binary-safe records in and out, reloads
// from stdin, malformed lines reported by number, and deletes that dump no longer shows.
//
// The record format is checked against an escaper and parser written here from the
// documentation (tools/bulk.hpp), not against chordctl's own code.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "net/admin_codec.hpp"
#include "net/peer_pool.hpp"
#include "node/client.hpp"

extern char** environ;

namespace chordkv::testing {
namespace {

using namespace std::chrono_literals;
using Records = std::map<std::string, std::string>;

// --- the documented line format, written independently of tools/bulk.cpp -----------------

std::string escape(const std::string& bytes) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (u < 0x20 || u >= 0x7f) {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        } else {
            out += c;
        }
    }
    return out;
}

std::string unescape(const std::string& text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\') {
            out += text[i];
            continue;
        }
        if (++i == text.size()) throw std::runtime_error("lone backslash in " + text);
        switch (text[i]) {
            case '\\':
                out += '\\';
                break;
            case 't':
                out += '\t';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 'x':
                if (i + 2 >= text.size()) throw std::runtime_error("short \\x in " + text);
                out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
                i += 2;
                break;
            default:
                throw std::runtime_error("unknown escape in " + text);
        }
    }
    return out;
}

std::string lines_of(const Records& records) {
    std::string out;
    for (const auto& [key, value] : records) out += escape(key) + "\t" + escape(value) + "\n";
    return out;
}

// Parses dump output; a line that is not KEY<TAB>VALUE, escaped as documented, or a key seen
// twice is a test failure.
Records parse_dump(const std::string& out) {
    Records records;
    std::size_t at = 0;
    std::size_t line = 0;
    while (at < out.size()) {
        ++line;
        const std::size_t lf = out.find('\n', at);
        if (lf == std::string::npos) {
            ADD_FAILURE() << "dump's last line has no newline";
            break;
        }
        const std::string text = out.substr(at, lf - at);
        at = lf + 1;
        for (unsigned char c : text) {
            if (c != '\t' && (c < 0x20 || c >= 0x7f)) {
                ADD_FAILURE() << "dump line " << line << " holds raw byte " << int(c);
                break;
            }
        }
        const std::size_t tab = text.find('\t');
        if (tab == std::string::npos || text.find('\t', tab + 1) != std::string::npos) {
            ADD_FAILURE() << "dump line " << line << " is not KEY<TAB>VALUE: " << text;
            continue;
        }
        try {
            const std::string key = unescape(text.substr(0, tab));
            if (!records.emplace(key, unescape(text.substr(tab + 1))).second) {
                ADD_FAILURE() << "dump has key " << escape(key) << " twice";
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << "dump line " << line << ": " << e.what();
        }
    }
    return records;
}

// Names the first few differences between two record sets, or "" when they are equal.
std::string difference(const Records& expected, const Records& got) {
    std::string out;
    int shown = 0;
    for (const auto& [key, value] : expected) {
        auto it = got.find(key);
        if (it == got.end() || it->second != value) {
            if (shown++ < 5) {
                out += (it == got.end() ? "missing " : "wrong value for ") + escape(key) + "\n";
            }
        }
    }
    for (const auto& [key, value] : got) {
        if (expected.count(key) == 0 && shown++ < 10) out += "unexpected " + escape(key) + "\n";
    }
    if (shown > 10) out += "(" + std::to_string(shown) + " differences in all)\n";
    return out;
}

// --- running chordctl with stdin, stdout and stderr of our choosing -------------------------

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

struct CtlResult {
    int exit_code = -1;  // -1: killed at the deadline
    std::string out;
    std::string err;
};

// Runs chordctl `args` with stdin from `stdin_path`, killing it (by its PID) if it outlives
// `timeout`.
CtlResult run_ctl(const TempDir& dir, const std::vector<std::string>& args,
                  const std::string& stdin_path = "/dev/null",
                  std::chrono::milliseconds timeout = 60s) {
    const std::string out_path = dir.file("ctl.out");
    const std::string err_path = dir.file("ctl.err");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, stdin_path.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> argv = {chordctl_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> raw;
    for (auto& a : argv) raw.push_back(a.data());
    raw.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, raw[0], &actions, nullptr, raw.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("posix_spawn chordctl failed");
    CtlResult result;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            break;
        }
        std::this_thread::sleep_for(5ms);
    }
    result.out = read_file(out_path);
    result.err = read_file(err_path);
    return result;
}

// --- the test ------------------------------------------------------------------------------

// 5,000 records; many keys and values hold bytes the format must escape.
Records generate_records() {
    std::mt19937 rng(42);
    Records records;
    for (int i = 0; i < 5000; ++i) {
        std::string key = "key-" + std::to_string(i);
        if (i % 7 == 0) key += "\ttab";
        if (i % 11 == 0) key += "\nnewline";
        if (i % 13 == 0) key += "\\back\\slash";
        if (i % 17 == 0) key += std::string("\0nul", 4);
        if (i % 19 == 0) key += "\xff\xfe";
        if (i % 23 == 0) key += "\r\x7f\x01 \x80";
        std::string value;
        if (i % 3 == 0) {
            value.resize(rng() % 300);
            for (auto& c : value) c = static_cast<char>(rng());
        } else if (i % 3 == 1) {
            value = "value " + std::to_string(i) + " \\n is not a newline\t\n\r" +
                    std::string("\0\xff", 2);
        } else if (i % 100 == 2) {
            value = "";  // empty values are values
        } else {
            value = "plain-" + std::to_string(i);
        }
        records[key] = value;
    }
    return records;
}

TEST(BulkIntegration, LoadDumpReloadMalformedAndDelete) {
    const auto began = std::chrono::steady_clock::now();
    TempDir dir("bulk");
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    ASSERT_TRUE(cluster.start(1, 0)) << cluster.log(1);
    ASSERT_TRUE(cluster.start(2, 0)) << cluster.log(2);
    std::string problem;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 20s))
        << problem << "\n"
        << cluster.dump();
    const auto ctl = [&](std::size_t node, std::vector<std::string> args,
                         const std::string& stdin_path = "/dev/null") {
        args.insert(args.begin(), {"--node", cluster.address(node)});
        return run_ctl(dir, args, stdin_path);
    };

    // 1. load FILE through one node stores every record.
    Records expected = generate_records();
    ASSERT_EQ(expected.size(), 5000u);
    write_file(dir.file("records.tsv"), lines_of(expected));
    auto load = ctl(0, {"load", dir.file("records.tsv")});
    ASSERT_EQ(load.exit_code, 0) << load.err;
    EXPECT_NE(load.err.find("loaded 5000 keys"), std::string::npos) << load.err;
    EXPECT_NE(load.err.find(", 0 failed"), std::string::npos) << load.err;
    EXPECT_TRUE(load.out.empty()) << load.out;

    // 2. dump returns exactly those bytes, through another node.
    auto dump = ctl(1, {"dump"});
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    EXPECT_NE(dump.err.find("dumped 5000 keys"), std::string::npos) << dump.err;
    EXPECT_EQ(difference(expected, parse_dump(dump.out)), "");

    // 3. load - (stdin) with new values for 500 keys; --json puts the summary on stdout.
    Records changed;
    std::size_t n = 0;
    for (auto& [key, value] : expected) {
        if (n++ % 10 != 0) continue;
        value = "changed\t" + std::to_string(n) + std::string("\0\n\\", 3);
        changed[key] = value;
    }
    ASSERT_EQ(changed.size(), 500u);
    write_file(dir.file("changed.tsv"), lines_of(changed));
    auto reload = ctl(2, {"--json", "--window", "16", "load", "-"}, dir.file("changed.tsv"));
    ASSERT_EQ(reload.exit_code, 0) << reload.err;
    EXPECT_NE(reload.out.find("\"loaded\":500,\"failed\":0"), std::string::npos) << reload.out;
    ClientOptions options;
    options.seeds = {cluster.address(1)};
    Client client(options);
    for (const auto& [key, value] : changed) {
        auto got = client.get(key);
        ASSERT_TRUE(got) << escape(key) << ": " << got.error().message();
        EXPECT_TRUE(got->found) << escape(key);
        EXPECT_EQ(got->value, value) << escape(key);
    }

    // 4. Malformed lines are reported by number and counted; the good lines are stored.
    const std::string bad_file =
        "good-1\tone\n"                  // 1
        "no tab here\n"                  // 2
        "good-2\ttwo\\x00\\xFF\n"        // 3
        "bad\\q-escape\tv\n"             // 4
        "\tempty key\n"                  // 5
        "\n"                             // 6: skipped
        "good-3\tthree\n"                // 7
        "short\\x4\tv\n"                 // 8
        + std::string(70 * 1024, 'k') +  // 9: key too long
        "\tv\n"                          //
        "good-4\t\n"                     // 10
        "trailing\tbackslash\\";         // 11 (no newline)
    write_file(dir.file("bad.tsv"), bad_file);
    auto bad = ctl(0, {"load", dir.file("bad.tsv")});
    EXPECT_EQ(bad.exit_code, 2) << bad.err;
    for (int line : {2, 4, 5, 8, 9, 11}) {
        EXPECT_NE(bad.err.find("chordctl: line " + std::to_string(line) + ": "), std::string::npos)
            << "line " << line << " not reported:\n"
            << bad.err;
    }
    for (int line : {1, 3, 6, 7, 10}) {
        EXPECT_EQ(bad.err.find("line " + std::to_string(line) + ":"), std::string::npos) << bad.err;
    }
    EXPECT_NE(bad.err.find("loaded 4 keys"), std::string::npos) << bad.err;
    EXPECT_NE(bad.err.find("6 failed"), std::string::npos) << bad.err;
    const Records good = {{"good-1", "one"},
                          {"good-2", std::string("two\0\xff", 5)},
                          {"good-3", "three"},
                          {"good-4", ""}};
    for (const auto& [key, value] : good) {
        auto got = client.get(key);
        ASSERT_TRUE(got) << key << ": " << got.error().message();
        EXPECT_TRUE(got->found) << key;
        EXPECT_EQ(got->value, value) << key;
        expected[key] = value;
    }

    // 5. Keys deleted with chordctl del are gone from the next dump; the rest is intact.
    std::vector<std::string> deleted;
    for (const auto& [key, value] : expected) {
        if (key.find('\0') == std::string::npos && deleted.size() < 25 &&
            std::hash<std::string>{}(key) % 50 == 0) {
            deleted.push_back(key);
        }
    }
    ASSERT_GE(deleted.size(), 10u);
    deleted.push_back("good-3");
    std::size_t via = 0;
    for (const auto& key : deleted) {
        auto del = ctl(via++ % 3, {"del", key});
        ASSERT_EQ(del.exit_code, 0) << escape(key) << ": " << del.err;
        expected.erase(key);
    }
    auto after = ctl(2, {"dump"});
    ASSERT_EQ(after.exit_code, 0) << after.err;
    const Records dumped = parse_dump(after.out);
    for (const auto& key : deleted) EXPECT_EQ(dumped.count(key), 0u) << escape(key);
    EXPECT_EQ(difference(expected, dumped), "");

    std::cout << "[bulk] test took "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - began)
                     .count()
              << " ms\n";
}

}  // namespace
}  // namespace chordkv::testing

namespace chordkv::testing {
namespace {

// kill -9 of a process while `chordctl load` writes through the ring: every line the load
// did not report as failed was acknowledged, and reads back after the killed process is
// restarted on its data dir.
TEST(BulkIntegration, KillNineDuringALoadLosesNoAcknowledgedWrite) {
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    ASSERT_TRUE(cluster.start(1, 0)) << cluster.log(1);
    ASSERT_TRUE(cluster.start(2, 0)) << cluster.log(2);
    std::string problem;
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 20s))
        << problem;

    TempDir dir("bulk");
    constexpr int kLines = 30'000;
    std::string text;
    for (int i = 0; i < kLines; ++i) {
        text += "kill-" + std::to_string(i) + "\tvalue-" + std::to_string(i) + "\n";
    }
    write_file(dir.file("load.tsv"), text);

    CtlResult load;
    std::thread loader([&] {
        load = run_ctl(dir, {"--node", cluster.address(0), "load", dir.file("load.tsv")},
                       "/dev/null", 150s);
    });
    // Kill process 1 once the load is well under way (it holds keys as owner and replica).
    const bool started = wait_for(
        [&] {
            auto info = cluster.info(2, /*keys=*/true);
            if (!info) return false;
            std::uint64_t held = 0;
            for (const auto& v : info->vnodes) held += v.keys_owned + v.replica_keys;
            return held > 3'000;
        },
        60s, 20ms);
    if (started) cluster.kill9(1);
    loader.join();
    ASSERT_TRUE(started) << "the load never got going";
    ASSERT_NE(load.exit_code, -1) << "load did not finish";

    // Lines the load reported as failed ("chordctl: line N: ...") were not acknowledged.
    std::set<int> failed;
    std::istringstream err(load.err);
    for (std::string line; std::getline(err, line);) {
        const std::string prefix = "chordctl: line ";
        if (line.rfind(prefix, 0) == 0) failed.insert(std::stoi(line.substr(prefix.size())));
    }
    std::cout << "[kill during load] exit " << load.exit_code << ", " << failed.size() << " of "
              << kLines << " lines failed while process 1 died\n";

    ASSERT_TRUE(cluster.start(1, 0)) << cluster.log(1);
    ASSERT_TRUE(wait_for([&] { return (problem = cluster.ideal_ring_problem()).empty(); }, 20s))
        << problem;
    Records expected;
    for (int i = 0; i < kLines; ++i) {
        if (failed.count(i + 1) == 0) {
            expected["kill-" + std::to_string(i)] = "value-" + std::to_string(i);
        }
    }
    // Every acknowledged line reads back through the restarted process.
    Client client([&] {
        ClientOptions o;
        o.seeds = {cluster.address(1)};
        o.timeout = 5s;
        return o;
    }());
    std::size_t missing = 0;
    for (const auto& [key, value] : expected) {
        auto got = client.get(key);
        if (!got || !got->found || got->value != value) ++missing;
    }
    EXPECT_EQ(missing, 0u) << "acknowledged writes lost after kill -9 and restart";
}

// chordctl stats' key counts read every key's header; the node does that on a thread of its
// own, over a snapshot, so that it keeps serving: a get sent while counts run is answered
// before they end. At most 4 counts wait; with 6 sent at once, at least one is refused busy.
TEST(BulkIntegration, KeyCountsRunBesideTheDataPathAndAreBounded) {
    Cluster cluster({});
    ASSERT_TRUE(cluster.start(0, -1)) << cluster.log(0);
    TempDir dir("bulk");
    constexpr int kKeys = 150'000;  // each count then takes tens of milliseconds
    std::string text;
    for (int i = 0; i < kKeys; ++i) text += "count-" + std::to_string(i) + "\tv\n";
    write_file(dir.file("load.tsv"), text);
    auto load = run_ctl(dir, {"--node", cluster.address(0), "load", dir.file("load.tsv")});
    ASSERT_EQ(load.exit_code, 0) << load.err;

    boost::asio::io_context io(1);
    net::PeerPool pool(io, net::PeerPoolOptions{});
    const std::string address = cluster.address(0);
    constexpr int kCounts = 6;
    std::vector<std::optional<Result<net::InfoReply>>> counts(kCounts);
    int busy = 0;
    int counted = 0;
    for (int c = 0; c < kCounts; ++c) {
        pool.call(
            address,
            [](std::uint64_t id) {
                return net::encode_admin(net::InfoRequest{id, true}, nullptr);
            },
            [&, c](Result<net::Frame> frame) {
                if (!frame) {
                    counts[c] = Result<net::InfoReply>(frame.error());
                } else if (frame->type == net::admin_type<net::ErrorReply>()) {
                    auto e = net::decode_admin<net::ErrorReply>(frame->payload);
                    counts[c] = Result<net::InfoReply>(
                        e ? Error(static_cast<Errc>(e->code), e->message) : e.error());
                } else {
                    counts[c] = net::decode_admin<net::InfoReply>(frame->payload);
                }
                if (counts[c]->code() == Errc::busy) {
                    ++busy;
                } else {
                    ++counted;
                }
            },
            60s);
    }
    // A refusal is sent as soon as the node has read all six requests.
    const auto run_until = [&](const std::function<bool()>& done) {
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        while (!done() && std::chrono::steady_clock::now() < deadline) {
            io.run_one_until(deadline);
        }
        return done();
    };
    ASSERT_TRUE(run_until([&] { return busy > 0 || counted == kCounts; }));
    ASSERT_GT(busy, 0) << "6 key counts at once, none refused";
    std::optional<Result<net::Frame>> got;
    int counted_when_got = -1;
    pool.call(
        address,
        [](std::uint64_t id) {
            return net::encode_admin(net::GetRequest{id, "count-7", false}, nullptr);
        },
        [&](Result<net::Frame> frame) {
            got = std::move(frame);
            counted_when_got = counted;
        },
        60s);
    ASSERT_TRUE(run_until([&] { return got.has_value() && busy + counted == kCounts; }));
    ASSERT_TRUE(*got) << got->error().message();
    auto reply = net::decode_admin<net::GetReply>((*got)->payload);
    ASSERT_TRUE(reply) << reply.error().message();
    EXPECT_TRUE(reply->found && reply->value == "v");
    EXPECT_LT(counted_when_got, counted) << "the get waited for every key count";
    for (const auto& count : counts) {
        if (count->code() == Errc::busy) continue;
        ASSERT_TRUE(*count) << count->error().message();
        EXPECT_TRUE((*count)->keys_counted);
        std::uint64_t owned = 0;
        for (const auto& v : (*count)->vnodes) owned += v.keys_owned;
        EXPECT_EQ(owned, static_cast<std::uint64_t>(kKeys));
    }
}

}  // namespace
}  // namespace chordkv::testing
