// chordkv-chaos: a seeded fault schedule against a real cluster under a client workload, with
// every acknowledged write checked at the end (issue 6; tests/chaos/README.md).
//
//   start N hosts (tools/chord-cluster) ─► ideal ring
//        │
//        ├── workload threads: put / del / get on their own keys, through any host; every
//        │   read judged against the KeyOracle (acknowledged writes, maybe-applied failures)
//        │
//        └── fault schedule (std::mt19937_64 seeded with --seed), one every few seconds:
//            kill -9, restart, add, leave, cut + restore, partition + heal — never more than
//            R-1 hosts down or cut off at once — and after each the time until the ring is
//            ideal again
//   after --duration: restart the killed, heal ─► ideal ring ─► repair (every key >= R copies)
//        ─► read every key back (lost = an acknowledged write that does not) ─► report
//
// Exit 0 only when nothing was lost, no read was stale, the ring is ideal and every key has at
// least R copies; 1 otherwise (2 for bad flags). The cluster is always stopped (chord-cluster
// stop), on failure and on SIGINT / SIGTERM too (a second signal ends the program at once).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "host_cluster.hpp"
#include "net/admin_codec.hpp"
#include "net/request_client.hpp"
#include "node/client.hpp"
#include "oracle.hpp"

namespace po = boost::program_options;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace chordkv::chaos {
namespace {

constexpr int kExitPass = 0;
constexpr int kExitFail = 1;
constexpr int kExitUsage = 2;

std::atomic<bool> g_interrupted{false};

extern "C" void on_signal(int) {
    g_interrupted.store(true);
}

void install_signal_handlers() {
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;  // a second signal ends the program at once
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
}

const std::vector<std::string> kFaultKinds = {"kill",  "restart", "add",
                                              "leave", "cut",     "partition"};

struct Config {
    int hosts = 8;
    std::uint64_t seed = 0;
    int duration_s = 120;
    std::size_t keys = 2000;
    std::string state_dir;
    int threads = 4;
    double ops_per_second = 300;
    std::uint64_t ops_max = 1'000'000;  // per thread
    int put_percent = 40;
    int del_percent = 10;
    int gap_min_ms = 1500;
    int gap_max_ms = 4000;
    int cut_max_ms = 1500;
    std::set<std::string> faults;
    int heal_deadline_s = 30;
    int final_ring_deadline_s = 60;
    int repair_deadline_s = 90;
    int exact_wait_s = 20;
    int replicas = 3;
    int write_acks = 2;
    int successors = 8;
    int repair_interval_ms = 200;
    int vnodes = 8;
    std::string subnet = "10.219.0";
    int port = 7700;
    int client_timeout_ms = 3000;
    std::string script = CHORDKV_CHORD_CLUSTER_PATH;
    std::string chordd = CHORDKV_CHORDD_PATH;
    bool json = false;
    bool keep_logs = false;
    int max_down() const { return replicas - 1; }
};

std::string key_name(std::size_t k) {
    return "chaos-" + std::to_string(k);
}

std::string wall_clock() {
    const auto now = std::chrono::system_clock::now();
    const auto t = std::chrono::system_clock::to_time_t(now);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
    return buf;
}

// The wall-clock time a version was stamped at (an HLC stamp: Unix ms << 16 | logical).
std::string version_time(std::uint64_t version) {
    const auto ms = static_cast<std::int64_t>(version >> 16);
    const std::time_t t = ms / 1000;
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    return buf;
}

std::string fixed(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (const char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    return out + "\"";
}

// The addresses of the running hosts, for the workload's clients; a new generation whenever
// the set changes so that clients are rebuilt with new seeds.
class Membership {
public:
    void set(std::vector<std::string> addresses) {
        std::lock_guard lock(mutex_);
        addresses_ = std::move(addresses);
        ++generation_;
    }
    std::pair<std::uint64_t, std::vector<std::string>> get() const {
        std::lock_guard lock(mutex_);
        return {generation_, addresses_};
    }

private:
    mutable std::mutex mutex_;
    std::uint64_t generation_ = 0;
    std::vector<std::string> addresses_;
};

struct WorkloadStats {
    std::uint64_t puts = 0;
    std::uint64_t dels = 0;
    std::uint64_t gets = 0;
    std::uint64_t writes_acked = 0;
    std::uint64_t writes_failed = 0;
    std::uint64_t reads_ok = 0;
    std::uint64_t reads_failed = 0;
    std::uint64_t stale = 0;
    std::map<std::string, std::uint64_t> errors;  // error message -> count (writes and reads)
    std::vector<double> failed_at_s;              // when each failed operation ended

    void failed(const std::string& message, double at_s) {
        ++errors[message];
        failed_at_s.push_back(at_s);
    }

    void add(const WorkloadStats& o) {
        puts += o.puts;
        dels += o.dels;
        gets += o.gets;
        writes_acked += o.writes_acked;
        writes_failed += o.writes_failed;
        reads_ok += o.reads_ok;
        reads_failed += o.reads_failed;
        stale += o.stale;
        for (const auto& [e, n] : o.errors) errors[e] += n;
        failed_at_s.insert(failed_at_s.end(), o.failed_at_s.begin(), o.failed_at_s.end());
    }
    std::uint64_t operations() const { return puts + dels + gets; }
};

struct StaleRead {
    double at_s = 0;
    std::size_t key = 0;
    Observed got;
    std::uint64_t version = 0;
    std::string expected;
    std::string route;  // where the client sends the key now (its owner in the client's view)
    std::string owner;  // that process's vnode for the key, as it reports it just after
};

// The vnode of the process at `address` whose arc holds `key`, with its predecessor and
// whether its arc is settled (node.hpp): what made it answer a read from its own copy.
std::string describe_owner(const std::string& address, const std::string& key) {
    auto info = testing::info_of(address);
    if (!info) return address + ": " + info.error().message();
    const chord::NodeId id = chord::NodeId::hash(key);
    for (const auto& v : info->vnodes) {
        if (!v.predecessor || !chord::in_open_closed(id, v.predecessor->id, v.id)) continue;
        return "vnode " + v.id.short_hex() + " of " + address + ", predecessor " +
               v.predecessor->id.short_hex() + " @" + v.predecessor->address +
               (v.arc_settled ? ", arc settled" : ", arc not settled");
    }
    return "no vnode of " + address + " has the key in its arc now";
}

struct FaultRecord {
    std::string kind;
    std::string target;
    double at_s = 0;
    double took_ms = 0;  // the action; for cut and partition until restored / healed
    // When the ring starts healing, for the faults whose heal is measured after the action:
    // the end of the action (the host is ready; the link is back).
    Clock::time_point effect;
    bool heal_measured = false;  // kill and leave: measured from the signal, during the action
    bool applied = false;
    std::string error;
    std::optional<double> heal_ms;  // ring ideal again, from the end of the action
    std::string unhealed;           // the ring's problem at the deadline
};

struct FinalCheck {
    bool reached = false;  // the run got to the final check (not interrupted, cluster up)
    std::vector<std::string> restart_errors;
    bool ring_ideal = false;
    double ring_s = 0;
    std::string ring_problem;
    bool copies_scanned = false;
    double repair_s = 0;
    std::size_t keys_with_copies_required = 0;
    std::size_t at_least_r = 0;
    std::size_t exactly_r = 0;
    std::size_t more_than_r = 0;
    std::size_t fewer_than_r = 0;
    std::size_t divergent = 0;  // copies with different versions
    std::vector<std::string> under_examples;
    std::size_t keys_read = 0;
    std::size_t lost = 0;
    std::size_t unreadable = 0;  // counted in lost: no read succeeded
    std::vector<std::string> lost_examples;
    bool ring_ideal_at_end = false;
    std::string ring_problem_at_end;
};

// Copies of one key across the running processes (values and tombstones).
struct KeyCopies {
    int count = 0;
    std::set<std::uint64_t> versions;
    std::vector<std::string> holders;  // "address v=version"
};

// Every copy of every chaos key on the processes at `addresses`, read with SyncScan (dump) of
// each process's whole store; nullopt when a process does not answer.
std::optional<std::vector<KeyCopies>> scan_copies(const std::vector<std::string>& addresses,
                                                  std::size_t keys) {
    std::vector<KeyCopies> copies(keys);
    for (const auto& address : addresses) {
        auto conn = net::RequestClient::connect(address, 2s);
        if (!conn) return std::nullopt;
        std::optional<std::string> resume;
        do {
            net::SyncScanRequest request{1,
                                         chord::NodeId(),
                                         chord::NodeId(),
                                         resume,
                                         2048,
                                         static_cast<std::uint8_t>(net::SyncPurpose::dump)};
            auto frame = (*conn)->call(net::encode_admin(request, nullptr), 5s);
            if (!frame || frame->type != net::admin_type<net::SyncScanReply>()) return std::nullopt;
            auto reply = net::decode_admin<net::SyncScanReply>(frame->payload);
            if (!reply) return std::nullopt;
            for (const auto& e : reply->entries) {
                if (e.key.rfind("chaos-", 0) != 0) continue;
                std::size_t k = 0;
                try {
                    k = std::stoul(e.key.substr(6));
                } catch (const std::exception&) {
                    continue;
                }
                if (k >= keys) continue;
                auto& c = copies[k];
                ++c.count;
                c.versions.insert(e.record.version);
                c.holders.push_back(address + " v=" + std::to_string(e.record.version) +
                                    (e.record.tombstone ? " (deleted)" : ""));
            }
            resume = reply->resume_after;
        } while (resume);
    }
    return copies;
}

class ChaosRun {
public:
    explicit ChaosRun(Config config)
        : config_(std::move(config)),
          rng_(config_.seed),
          oracle_(config_.keys),
          cluster_(cluster_options(config_)) {}

    int run() {
        t0_ = Clock::now();
        if (!setup()) {
            finish_cluster(true);
            report();
            return kExitFail;
        }
        std::vector<WorkloadStats> per_thread(static_cast<std::size_t>(config_.threads));
        {
            // Joined on every way out of this scope (an exception from the fault schedule
            // included), so that the cluster is stopped with no client still running.
            struct Workers {
                std::atomic<bool>& stop;
                std::vector<std::thread> threads;
                ~Workers() {
                    stop = true;
                    for (auto& t : threads) t.join();
                }
            } workers{stop_workload_, {}};
            for (int t = 0; t < config_.threads; ++t) {
                workers.threads.emplace_back([this, t, &per_thread] {
                    try {
                        workload(t, per_thread[static_cast<std::size_t>(t)]);
                    } catch (const std::exception& e) {
                        log("workload thread " + std::to_string(t) + " stopped: " + e.what());
                    }
                });
            }
            inject_faults();
        }
        for (const auto& s : per_thread) stats_.add(s);
        log("workload stopped: " + std::to_string(stats_.operations()) + " operations");
        if (!g_interrupted) final_check();
        const bool pass = passed();
        finish_cluster(!pass);
        report();
        return pass ? kExitPass : kExitFail;
    }

private:
    static HostClusterOptions cluster_options(const Config& c) {
        HostClusterOptions o;
        o.script = c.script;
        o.state_dir = c.state_dir;
        o.chordd = c.chordd;
        o.subnet = c.subnet;
        o.port = c.port;
        o.vnodes = c.vnodes;
        o.chordd_flags = {"--replicas",        std::to_string(c.replicas),
                          "--write-acks",      std::to_string(c.write_acks),
                          "--successors",      std::to_string(c.successors),
                          "--repair-interval", std::to_string(c.repair_interval_ms)};
        return o;
    }

    double since_start_s() const {
        return std::chrono::duration<double>(Clock::now() - t0_).count();
    }
    static double ms_since(Clock::time_point t) {
        return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    }

    void log(const std::string& line) {
        std::lock_guard lock(log_mutex_);
        std::cerr << "[chaos +" << fixed(since_start_s(), 3) << " s " << wall_clock() << "] "
                  << line << std::endl;
    }

    // Sleeps `d` unless interrupted; false when interrupted.
    static bool sleep_for(std::chrono::milliseconds d) {
        const auto until = Clock::now() + d;
        while (Clock::now() < until) {
            if (g_interrupted) return false;
            std::this_thread::sleep_for(std::min<Clock::duration>(100ms, until - Clock::now()));
        }
        return !g_interrupted;
    }

    // Polls until the hosts at `addresses` form the ideal ring, for at most `deadline`; the time
    // from `from` (default: now) until it was, or nullopt with the last problem in `problem`.
    std::optional<double> wait_ideal_ring(const std::vector<std::string>& addresses,
                                          std::chrono::seconds deadline, std::string& problem,
                                          std::optional<Clock::time_point> from = std::nullopt) {
        const auto start = Clock::now();
        const auto until = start + deadline;
        for (;;) {
            problem = testing::ideal_ring_problem(addresses,
                                                  static_cast<std::size_t>(config_.successors));
            if (problem.empty()) return ms_since(from.value_or(start));
            if (Clock::now() >= until || g_interrupted) return std::nullopt;
            std::this_thread::sleep_for(100ms);
        }
    }

    bool setup() {
        log("starting " + std::to_string(config_.hosts) + " hosts with chord-cluster (state " +
            config_.state_dir + (cluster_.netns() ? ", network namespaces" : ", loopback") + ")");
        if (!cluster_.netns()) {
            log("not root: no cut or partition faults (chord-cluster cannot make them)");
            config_.faults.erase("cut");
            config_.faults.erase("partition");
        }
        if (auto started = cluster_.start(config_.hosts); !started) {
            setup_error_ = started.error().message();
            log("start failed: " + setup_error_);
            return false;
        }
        std::string problem;
        auto took = wait_ideal_ring(cluster_.running_addresses(),
                                    std::chrono::seconds(config_.final_ring_deadline_s), problem);
        if (!took) {
            setup_error_ = "no ideal ring after start: " + problem;
            log(setup_error_);
            return false;
        }
        log("ideal ring of " + std::to_string(config_.hosts) + " hosts after " + fixed(*took, 0) +
            " ms");
        membership_.set(cluster_.running_addresses());
        return true;
    }

    // --- workload -----------------------------------------------------------------------

    void workload(int t, WorkloadStats& stats) {
        std::mt19937_64 rng(config_.seed ^
                            (0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(t + 1)));
        const std::size_t threads = static_cast<std::size_t>(config_.threads);
        const std::size_t mine =
            (config_.keys + threads - 1 - static_cast<std::size_t>(t)) / threads;
        if (mine == 0) return;
        std::uniform_int_distribution<std::size_t> pick(0, mine - 1);
        std::uniform_int_distribution<int> roll(0, 99);
        const auto interval = std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(config_.threads / config_.ops_per_second));
        std::optional<Client> client;
        std::uint64_t generation = 0;
        std::uint64_t seq = 0;
        auto next = Clock::now();
        while (!stop_workload_ && !g_interrupted && stats.operations() < config_.ops_max) {
            next += interval;
            const auto now = Clock::now();
            if (next < now - 1s) next = now;  // after a long operation: no burst to catch up
            while (Clock::now() < next && !stop_workload_) {
                std::this_thread::sleep_for(std::min<Clock::duration>(100ms, next - Clock::now()));
            }
            if (stop_workload_) break;
            auto [gen, addresses] = membership_.get();
            if (!client || gen != generation) {
                std::shuffle(addresses.begin(), addresses.end(), rng);
                ClientOptions options;
                options.seeds = addresses;
                options.timeout = std::chrono::milliseconds(config_.client_timeout_ms);
                client.emplace(options);
                generation = gen;
            }
            const std::size_t k = static_cast<std::size_t>(t) + threads * pick(rng);
            const std::string key = key_name(k);
            const int r = roll(rng);
            if (r < config_.put_percent + config_.del_percent) {
                Observed value;
                Result<std::uint64_t> done(std::uint64_t{0});
                if (r < config_.put_percent) {
                    value = key + "-t" + std::to_string(t) + "-" + std::to_string(++seq);
                    ++stats.puts;
                    done = client->put(key, *value);
                } else {
                    ++stats.dels;
                    done = client->del(key);
                }
                if (done) {
                    ++stats.writes_acked;
                    oracle_.on_write_acked(k, value, *done, since_start_s());
                } else {
                    ++stats.writes_failed;
                    stats.failed(done.error().message(), since_start_s());
                    probe_failure(key, done.error().message());
                    oracle_.on_write_failed(k, value, done.error().message(), since_start_s());
                }
            } else {
                ++stats.gets;
                auto got = client->get(key);
                if (!got) {
                    ++stats.reads_failed;
                    stats.failed(got.error().message(), since_start_s());
                    probe_failure(key, got.error().message());
                    oracle_.on_read_failed(k, got.error().message(), since_start_s());
                    continue;
                }
                ++stats.reads_ok;
                const Observed observed = got->found ? Observed(got->value) : std::nullopt;
                if (!oracle_.on_read(k, observed, got->version, since_start_s())) {
                    ++stats.stale;
                    StaleRead s;
                    s.at_s = since_start_s();
                    s.key = k;
                    s.got = observed;
                    s.version = got->version;
                    s.expected = oracle_.expected(k);
                    s.route = client->route(key);
                    s.owner = describe_owner(s.route, key);
                    log("STALE read of " + key + ": got " + describe(observed) +
                        " v=" + std::to_string(got->version) + ", expected " + s.expected +
                        " (owner in the client's view: " + s.owner + ")");
                    std::lock_guard lock(stale_mutex_);
                    if (stale_reads_.size() < 100) stale_reads_.push_back(std::move(s));
                }
            }
        }
    }

    // When a read returned a value whose write was acknowledged with another version: the
    // same write was applied again later, with a new stamp (a request that reached its node
    // long after the client gave up on it and wrote elsewhere).
    std::string reapplied_note(std::size_t k, const Observed& got, std::uint64_t version) const {
        if (!got) return "";  // deletes have no value to tell them apart
        auto acked = oracle_.acked_version(k, got);
        if (!acked || *acked == version) return "";
        return "\n      that value was acknowledged with v=" + std::to_string(*acked) + " (" +
               version_time(*acked) + "); the copy read was stamped " + version_time(version) +
               ": the same write applied again later";
    }

    // The first few failed operations after each fault are logged with the owner every
    // running host names for the key (a LookupRequest to each): whether the cluster still
    // routes to a host that is gone, or the client does.
    void probe_failure(const std::string& key, const std::string& error) {
        if (failure_probes_left_.fetch_sub(1) <= 0) return;
        const auto addresses = membership_.get().second;
        std::map<std::string, int> owners;
        for (const auto& address : addresses) {
            auto conn = net::RequestClient::connect(address, 1s);
            std::string owner = "error";
            if (conn) {
                auto frame =
                    (*conn)->call(net::encode_admin(net::LookupRequest{1, key}, nullptr), 2s);
                if (frame && frame->type == net::admin_type<net::LookupReply>()) {
                    if (auto r = net::decode_admin<net::LookupReply>(frame->payload)) {
                        owner = r->owner.address;
                    }
                }
            }
            ++owners[owner];
        }
        std::string named;
        for (const auto& [owner, n] : owners) {
            named += (named.empty() ? "" : ", ") + owner + " by " + std::to_string(n);
        }
        log("  failed: " + key + ": " + error + "; owner named by the running hosts: " + named);
    }

    // --- faults -------------------------------------------------------------------------

    std::vector<std::string> feasible_kinds() const {
        const int running = static_cast<int>(cluster_.running().size());
        const int killed = static_cast<int>(cluster_.killed().size());
        const int down_budget = config_.max_down() - killed;
        std::vector<std::string> out;
        auto allow = [&](const std::string& kind, bool ok) {
            if (ok && config_.faults.count(kind)) out.push_back(kind);
        };
        allow("kill", down_budget >= 1 && running > config_.replicas + 1);
        allow("restart", killed > 0);
        allow("add", running + killed < config_.hosts + 2 && cluster_.size() < 200);
        allow("leave", running > std::max(config_.replicas + 2, config_.hosts - 2));
        allow("cut", down_budget >= 1 && running > config_.replicas);
        allow("partition", down_budget >= 1 && running >= 4);
        return out;
    }

    int pick_one(const std::vector<int>& from) {
        std::uniform_int_distribution<std::size_t> d(0, from.size() - 1);
        return from[d(rng_)];
    }

    std::chrono::milliseconds cut_duration() {
        std::uniform_int_distribution<int> d(std::max(1, config_.cut_max_ms / 3),
                                             std::max(1, config_.cut_max_ms));
        return std::chrono::milliseconds(d(rng_));
    }

    void inject_faults() {
        const auto end = Clock::now() + std::chrono::seconds(config_.duration_s);
        fault_phase_start_s_ = since_start_s();
        std::uniform_int_distribution<int> gap(config_.gap_min_ms,
                                               std::max(config_.gap_min_ms, config_.gap_max_ms));
        static const std::map<std::string, int> weights = {
            {"kill", 2}, {"restart", 3}, {"add", 1}, {"leave", 1}, {"cut", 2}, {"partition", 2}};
        while (!g_interrupted) {
            if (!sleep_for(std::chrono::milliseconds(gap(rng_)))) break;
            if (Clock::now() >= end) break;
            const auto kinds = feasible_kinds();
            if (kinds.empty()) continue;
            std::vector<int> w;
            for (const auto& k : kinds) w.push_back(weights.at(k));
            std::discrete_distribution<std::size_t> choose(w.begin(), w.end());
            FaultRecord f = inject(kinds[choose(rng_)]);
            if (f.applied && !f.heal_measured && !g_interrupted) {
                std::string problem;
                auto healed = wait_ideal_ring(cluster_.running_addresses(),
                                              std::chrono::seconds(config_.heal_deadline_s),
                                              problem, f.effect);
                if (healed) {
                    f.heal_ms = *healed;
                } else {
                    f.unhealed = problem;
                }
            }
            if (f.applied && f.heal_ms) {
                log("  ring ideal again after " + fixed(*f.heal_ms, 0) + " ms");
            } else if (f.applied) {
                log("  ring NOT ideal " + std::to_string(config_.heal_deadline_s) +
                    " s after the fault: " + f.unhealed);
            }
            faults_.push_back(std::move(f));
        }
        fault_phase_s_ = since_start_s() - fault_phase_start_s_;
    }

    // How many of host i's vnodes are followed on the ring by another vnode of host i (from the
    // vnode ids the running hosts report; -1 when one does not answer): a leave tells each
    // vnode's neighbours, and a neighbour that is leaving too cannot pass it on.
    int adjacent_vnodes(int i) const {
        std::map<chord::NodeId, int> owner;
        for (int h : cluster_.running()) {
            auto info = testing::info_of(cluster_.address(h));
            if (!info) return -1;
            for (const auto& v : info->vnodes) owner[v.id] = h;
        }
        int adjacent = 0;
        for (auto it = owner.begin(); it != owner.end(); ++it) {
            auto next = std::next(it) == owner.end() ? owner.begin() : std::next(it);
            if (it->second == i && next->second == i && next != it) ++adjacent;
        }
        return adjacent;
    }

    // Runs `action` — a kill or a leave of host i — on another thread, and meanwhile polls the
    // ring of the other running hosts from the moment it starts: the ring starts healing at
    // the signal, while chord-cluster waits a second or two for the process to be reaped.
    // The clients stop using host i as a seed at once (a leaver still serves what its ring
    // view routes to it until it has handed its keys off).
    Status while_healing(FaultRecord& f, int i, std::function<Status()> action) {
        auto others = cluster_.running_addresses();
        others.erase(std::find(others.begin(), others.end(), cluster_.address(i)));
        membership_.set(others);
        const auto from = Clock::now();
        // Only the action's thread touches cluster_ until get().
        auto done = std::async(std::launch::async, [&f, from, action = std::move(action)] {
            Status status = action();
            f.took_ms = ms_since(from);
            return status;
        });
        std::string problem;
        auto healed =
            wait_ideal_ring(others, std::chrono::seconds(config_.heal_deadline_s), problem, from);
        Status status = done.get();
        f.heal_measured = true;
        if (healed) {
            f.heal_ms = *healed;
        } else {
            f.unhealed = problem;
        }
        return status;
    }

    FaultRecord inject(const std::string& kind) {
        failure_probes_left_ = kFailureProbesPerFault;
        FaultRecord f;
        f.kind = kind;
        f.at_s = since_start_s();
        const auto started = Clock::now();
        Status status;
        if (kind == "kill") {
            const int i = pick_one(cluster_.running());
            f.target = "host " + std::to_string(i);
            log("kill -9 " + f.target + " (" + cluster_.address(i) + ")");
            status = while_healing(f, i, [this, i] { return cluster_.kill(i); });
            membership_.set(cluster_.running_addresses());
        } else if (kind == "restart") {
            const int i = pick_one(cluster_.killed());
            f.target = "host " + std::to_string(i);
            log("restart " + f.target + " (" + cluster_.address(i) + ")");
            status = cluster_.restart(i);
            membership_.set(cluster_.running_addresses());
        } else if (kind == "add") {
            log("add a host");
            auto added = cluster_.add();
            if (added) {
                f.target = "host " + std::to_string(*added);
                log("  added " + f.target + " (" + cluster_.address(*added) + ")");
            } else {
                status = added.error();
            }
            membership_.set(cluster_.running_addresses());
        } else if (kind == "leave") {
            const int i = pick_one(cluster_.running());
            f.target = "host " + std::to_string(i);
            const int adjacent = adjacent_vnodes(i);
            log("graceful leave of " + f.target + " (" + cluster_.address(i) + "; " +
                std::to_string(adjacent) + " of its vnodes followed by another of its own)");
            if (adjacent > 0) f.target += " (" + std::to_string(adjacent) + " adjacent)";
            status = while_healing(f, i, [this, i] { return cluster_.leave(i); });
            membership_.set(cluster_.running_addresses());
        } else if (kind == "cut") {
            const int i = pick_one(cluster_.running());
            const auto d = cut_duration();
            f.target = "host " + std::to_string(i) + " for " + std::to_string(d.count()) + " ms";
            log("cut " + f.target + " (" + cluster_.address(i) + ")");
            status = cluster_.cut(i);
            if (status) {
                sleep_for(d);
                auto restored = cluster_.restore(i);
                log("  restored host " + std::to_string(i));
                if (!restored) status = restored;
            }
        } else if (kind == "partition") {
            auto running = cluster_.running();
            std::shuffle(running.begin(), running.end(), rng_);
            const int killed = static_cast<int>(cluster_.killed().size());
            std::uniform_int_distribution<int> size(1, std::max(1, config_.max_down() - killed));
            const auto m = static_cast<std::size_t>(size(rng_));
            std::vector<int> minority(running.begin(), running.begin() + static_cast<long>(m));
            std::vector<int> majority(running.begin() + static_cast<long>(m), running.end());
            std::sort(minority.begin(), minority.end());
            std::sort(majority.begin(), majority.end());
            const auto d = cut_duration();
            auto text = [](const std::vector<int>& g) {
                std::string s;
                for (int i : g) {
                    if (!s.empty()) s += ',';
                    s += std::to_string(i);
                }
                return s;
            };
            f.target = text(minority) + " | " + text(majority) + " for " +
                       std::to_string(d.count()) + " ms";
            log("partition " + f.target);
            status = cluster_.partition(minority, majority);
            if (status) {
                sleep_for(d);
                auto healed = cluster_.heal();
                log("  healed the partition");
                if (!healed) status = healed;
            }
        }
        if (!f.heal_measured) f.took_ms = ms_since(started);
        f.effect = Clock::now();
        f.applied = status.ok();
        if (!status) {
            f.error = status.error().message();
            log("  FAILED: " + f.error);
        }
        return f;
    }

    // --- the end ------------------------------------------------------------------------

    void final_check() {
        FinalCheck& c = final_;
        log("final: restarting every killed host, healing every link");
        for (int i : cluster_.killed()) {
            if (auto r = cluster_.restart(i); !r) {
                c.restart_errors.push_back(r.error().message());
                log("  restart of host " + std::to_string(i) + " FAILED: " + r.error().message());
            }
        }
        if (cluster_.netns()) {
            (void)cluster_.heal();
            for (int i : cluster_.running()) (void)cluster_.restore(i);
        }
        membership_.set(cluster_.running_addresses());
        auto ring =
            wait_ideal_ring(cluster_.running_addresses(),
                            std::chrono::seconds(config_.final_ring_deadline_s), c.ring_problem);
        c.ring_ideal = ring.has_value();
        c.ring_s = ring ? *ring / 1000 : config_.final_ring_deadline_s;
        log(ring ? "final: ideal ring after " + fixed(c.ring_s, 1) + " s"
                 : "final: ring NOT ideal after " + fixed(c.ring_s, 1) + " s: " + c.ring_problem);
        if (g_interrupted) return;
        c.reached = true;

        // Repair: every written key at R copies (or at least R once exact_wait has passed
        // with that), all of one version.
        const auto repair_start = Clock::now();
        const auto until = repair_start + std::chrono::seconds(config_.repair_deadline_s);
        std::optional<Clock::time_point> at_least_since;
        for (;;) {
            auto copies = scan_copies(cluster_.running_addresses(), config_.keys);
            if (copies) {
                c.copies_scanned = true;
                count_copies(*copies);
                const bool enough = c.fewer_than_r == 0;
                if (enough && !at_least_since) at_least_since = Clock::now();
                if (enough && c.more_than_r == 0 && c.divergent == 0) break;
                if (at_least_since &&
                    Clock::now() - *at_least_since >= std::chrono::seconds(config_.exact_wait_s)) {
                    break;
                }
            }
            if (Clock::now() >= until || g_interrupted) break;
            std::this_thread::sleep_for(500ms);
        }
        c.repair_s = ms_since(repair_start) / 1000;
        log("final: copies after " + fixed(c.repair_s, 1) + " s: " + std::to_string(c.at_least_r) +
            " of " + std::to_string(c.keys_with_copies_required) + " keys with >= R, " +
            std::to_string(c.exactly_r) + " with exactly R, " + std::to_string(c.divergent) +
            " with copies that disagree");

        read_back();
        c.ring_problem_at_end = testing::ideal_ring_problem(
            cluster_.running_addresses(), static_cast<std::size_t>(config_.successors));
        c.ring_ideal_at_end = c.ring_problem_at_end.empty();
    }

    void count_copies(const std::vector<KeyCopies>& copies) {
        FinalCheck& c = final_;
        c.keys_with_copies_required = c.at_least_r = c.exactly_r = c.more_than_r = 0;
        c.fewer_than_r = c.divergent = 0;
        c.under_examples.clear();
        for (std::size_t k = 0; k < copies.size(); ++k) {
            const KeyHistory& h = oracle_.history(k);
            const KeyCopies& kc = copies[k];
            // A key needs R copies once a write of it was acknowledged, or once any copy of
            // it exists (a failed write that was applied somewhere must be repaired too).
            if (!h.ever_acked && kc.count == 0) continue;
            ++c.keys_with_copies_required;
            if (kc.count >= config_.replicas) ++c.at_least_r;
            if (kc.count == config_.replicas) ++c.exactly_r;
            if (kc.count > config_.replicas) ++c.more_than_r;
            if (kc.versions.size() > 1) ++c.divergent;
            if (kc.count < config_.replicas) {
                ++c.fewer_than_r;
                if (c.under_examples.size() < 10) {
                    std::string s = key_name(k) + ": " + std::to_string(kc.count) + " copies";
                    for (const auto& holder : kc.holders) s += "; " + holder;
                    c.under_examples.push_back(s);
                }
            }
        }
    }

    void read_back() {
        FinalCheck& c = final_;
        ClientOptions options;
        options.seeds = cluster_.running_addresses();
        options.timeout = std::chrono::milliseconds(config_.client_timeout_ms);
        Client client(options);
        for (std::size_t k = 0; k < config_.keys && !g_interrupted; ++k) {
            const std::string key = key_name(k);
            std::optional<Result<GetResult>> got;
            for (int attempt = 0; attempt < 5; ++attempt) {
                got.emplace(client.get(key));
                if (*got) break;
                std::this_thread::sleep_for(200ms);
            }
            ++c.keys_read;
            const bool readable = got->ok();
            const Observed observed =
                readable && (*got)->found ? Observed((*got)->value) : std::nullopt;
            if (readable && oracle_.read_allowed(k, observed)) continue;
            ++c.lost;
            if (!readable) ++c.unreadable;
            if (c.lost_examples.size() >= 10) continue;
            std::string s = key + ": read " +
                            (readable ? describe(observed) + " v=" + std::to_string((*got)->version)
                                      : "failed: " + got->error().message()) +
                            ", expected " + oracle_.expected(k);
            auto quorum = client.get(key, true);
            s += "; quorum read " +
                 (quorum ? describe(quorum->found ? Observed(quorum->value) : std::nullopt) +
                               " v=" + std::to_string(quorum->version)
                         : "failed: " + quorum.error().message());
            if (readable) s += reapplied_note(k, observed, (*got)->version);
            s += "\n" + oracle_.events(k, "      ");
            c.lost_examples.push_back(s);
        }
        log("final: read back " + std::to_string(c.keys_read) + " keys, " + std::to_string(c.lost) +
            " lost");
    }

    bool passed() const {
        return setup_error_.empty() && !g_interrupted && final_.reached && final_.lost == 0 &&
               stats_.stale == 0 && final_.ring_ideal && final_.ring_ideal_at_end &&
               final_.copies_scanned && final_.fewer_than_r == 0;
    }

    // Keeps the hosts' logs when asked or when the run failed, then stops the cluster.
    void finish_cluster(bool failed) {
        if (failed || config_.keep_logs) {
            namespace fs = std::filesystem;
            logs_dir_ = config_.state_dir + ".logs";
            std::error_code ec;
            fs::remove_all(logs_dir_, ec);
            fs::create_directories(logs_dir_, ec);
            for (int i = 0; i < cluster_.size(); ++i) {
                const fs::path dir = config_.state_dir + "/host" + std::to_string(i);
                for (const auto& entry : fs::directory_iterator(dir, ec)) {
                    const std::string name = entry.path().filename().string();
                    if (name.rfind("log", 0) != 0) continue;
                    fs::copy_file(entry.path(),
                                  fs::path(logs_dir_) / ("host" + std::to_string(i) + "." + name),
                                  fs::copy_options::overwrite_existing, ec);
                }
            }
        }
        log("stopping the cluster (chord-cluster stop)");
        cluster_.stop();
    }

    // --- report -------------------------------------------------------------------------

    struct HealSummary {
        std::size_t measured = 0;  // applied faults
        std::size_t healed = 0;
        double median_ms = 0;
        double max_ms = 0;
    };

    HealSummary heal_summary() const {
        HealSummary s;
        std::vector<double> times;
        for (const auto& f : faults_) {
            if (!f.applied) continue;
            ++s.measured;
            if (f.heal_ms) times.push_back(*f.heal_ms);
        }
        s.healed = times.size();
        if (!times.empty()) {
            std::sort(times.begin(), times.end());
            const std::size_t n = times.size();
            s.median_ms = n % 2 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
            s.max_ms = times.back();
        }
        return s;
    }

    std::map<std::string, std::pair<int, int>> faults_by_kind() const {
        std::map<std::string, std::pair<int, int>> out;  // kind -> applied, failed
        for (const auto& k : kFaultKinds) out[k] = {0, 0};
        for (const auto& f : faults_) {
            auto& [applied, failed] = out[f.kind];
            (f.applied ? applied : failed) += 1;
        }
        return out;
    }

    // Failed client operations from fault i's injection to the next fault's (to the end of
    // the workload for the last).
    std::size_t failures_after(std::size_t i) const {
        const double from = faults_[i].at_s;
        const double to = i + 1 < faults_.size() ? faults_[i + 1].at_s : 1e300;
        return static_cast<std::size_t>(
            std::count_if(stats_.failed_at_s.begin(), stats_.failed_at_s.end(),
                          [&](double t) { return t >= from && t < to; }));
    }
    // "  (+0.4 .. +2.6 s)": when those failures happened, from the fault's injection.
    std::string failure_span(std::size_t i) const {
        const double from = faults_[i].at_s;
        const double to = i + 1 < faults_.size() ? faults_[i + 1].at_s : 1e300;
        double first = 1e300;
        double last = -1;
        for (double t : stats_.failed_at_s) {
            if (t < from || t >= to) continue;
            first = std::min(first, t - from);
            last = std::max(last, t - from);
        }
        if (last < 0) return "";
        return "  (+" + fixed(first, 1) + " .. +" + fixed(last, 1) + " s)";
    }

    // The fault most recently injected before `at_s` (for stale reads).
    std::string fault_before(double at_s) const {
        const FaultRecord* last = nullptr;
        for (const auto& f : faults_) {
            if (f.at_s <= at_s) last = &f;
        }
        if (!last) return "no fault yet";
        return "#" + std::to_string(last - faults_.data() + 1) + " " + last->kind + " " +
               last->target + " at +" + fixed(last->at_s, 1) + " s";
    }

    void report() const {
        if (config_.json) {
            report_json();
        } else {
            report_table();
        }
    }

    void report_table() const {
        const auto heal = heal_summary();
        const auto& c = final_;
        std::ostringstream out;
        out << "\nchordkv-chaos: seed " << config_.seed << ", " << config_.hosts << " hosts, "
            << config_.duration_s << " s of faults (ran " << fixed(fault_phase_s_, 1) << " s), "
            << config_.keys << " keys, R=" << config_.replicas << " W=" << config_.write_acks
            << ", cuts/partitions <= " << config_.cut_max_ms << " ms\n";
        if (!setup_error_.empty()) out << "SETUP FAILED: " << setup_error_ << "\n";
        if (g_interrupted) out << "INTERRUPTED\n";
        auto row = [&](const std::string& name, const std::string& value) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "  %-16s ", name.c_str());
            out << buf << value << "\n";
        };
        row("operations", std::to_string(stats_.operations()) + " (puts " +
                              std::to_string(stats_.puts) + ", deletes " +
                              std::to_string(stats_.dels) + ", gets " +
                              std::to_string(stats_.gets) + ")");
        row("acknowledged", std::to_string(stats_.writes_acked) + " writes");
        row("failed", std::to_string(stats_.writes_failed) + " writes (may have been applied), " +
                          std::to_string(stats_.reads_failed) + " reads");
        row("lost", std::to_string(c.lost) +
                        (c.unreadable ? " (" + std::to_string(c.unreadable) + " unreadable)"
                                      : std::string()) +
                        " of " + std::to_string(c.keys_read) + " keys read back" +
                        (c.reached ? "" : " (final check not reached)"));
        row("stale reads",
            std::to_string(stats_.stale) + " of " + std::to_string(stats_.reads_ok) + " reads");
        std::string kinds;
        int total = 0;
        for (const auto& [kind, n] : faults_by_kind()) {
            total += n.first;
            kinds += (kinds.empty() ? "" : ", ") + kind + " " + std::to_string(n.first);
            if (n.second) kinds += " (+" + std::to_string(n.second) + " failed)";
        }
        row("faults", std::to_string(total) + ": " + kinds);
        row("time to heal", "median " + fixed(heal.median_ms, 0) + " ms, max " +
                                fixed(heal.max_ms, 0) + " ms (" + std::to_string(heal.healed) +
                                " of " + std::to_string(heal.measured) + " healed within " +
                                std::to_string(config_.heal_deadline_s) + " s)");
        row("final ring",
            c.ring_ideal ? "ideal after " + fixed(c.ring_s, 1) + " s" +
                               (c.ring_ideal_at_end ? ", still at the end"
                                                    : ", NOT at the end: " + c.ring_problem_at_end)
            : c.ring_problem.empty() ? std::string("not checked")
                                     : "NOT ideal: " + c.ring_problem);
        row("copies",
            !c.copies_scanned
                ? std::string("not scanned")
                : std::to_string(c.keys_with_copies_required) + " keys: " +
                      std::to_string(c.at_least_r) + " with >= R, " + std::to_string(c.exactly_r) +
                      " with = R, " + std::to_string(c.more_than_r) + " with > R, " +
                      std::to_string(c.fewer_than_r) + " with < R; " + std::to_string(c.divergent) +
                      " with copies that disagree (" + fixed(c.repair_s, 1) + " s of repair)");
        if (!c.restart_errors.empty()) {
            for (const auto& e : c.restart_errors) row("restart error", e);
        }

        const std::size_t before_faults = static_cast<std::size_t>(
            std::count_if(stats_.failed_at_s.begin(), stats_.failed_at_s.end(),
                          [&](double t) { return faults_.empty() || t < faults_.front().at_s; }));
        out << "\n  #   at (s)  fault                                  took (ms)  heal (ms)  "
               "failed ops\n";
        {
            char buf[256];
            std::snprintf(buf, sizeof buf, "  %-3s %7.1f  %-38s %9s  %9s  %10zu\n", "-",
                          fault_phase_start_s_, "(workload starts)", "", "", before_faults);
            out << buf;
        }
        for (std::size_t i = 0; i < faults_.size(); ++i) {
            const auto& f = faults_[i];
            char buf[256];
            const std::string what = f.kind + " " + f.target;
            const std::string healed = !f.applied  ? "-"
                                       : f.heal_ms ? fixed(*f.heal_ms, 0)
                                                   : "NOT HEALED";
            std::snprintf(buf, sizeof buf, "  %-3zu %7.1f  %-38s %9.0f  %9s  %10zu", i + 1, f.at_s,
                          what.c_str(), f.took_ms, healed.c_str(), failures_after(i));
            out << buf << failure_span(i) << "\n";
            if (!f.applied) out << "        failed: " << f.error << "\n";
            if (f.applied && !f.heal_ms) out << "        ring: " << f.unhealed << "\n";
        }

        if (!stats_.errors.empty()) {
            out << "\n  client errors:\n";
            for (const auto& [e, n] : stats_.errors) out << "    " << n << " x " << e << "\n";
        }
        if (!stale_reads_.empty()) {
            out << "\n  stale reads (first " << stale_reads_.size() << "):\n";
            for (const auto& s : stale_reads_) {
                out << "    +" << fixed(s.at_s, 3) << " s " << key_name(s.key) << ": got "
                    << describe(s.got) << " v=" << s.version
                    << (s.version ? " (stamped " + version_time(s.version) + ")" : "")
                    << ", expected " << s.expected << "; after fault " << fault_before(s.at_s)
                    << "\n      owner: " << s.owner << reapplied_note(s.key, s.got, s.version)
                    << "\n"
                    << oracle_.events(s.key, "        ");
            }
        }
        if (!c.lost_examples.empty()) {
            out << "\n  lost (first " << c.lost_examples.size() << "):\n";
            for (const auto& s : c.lost_examples) out << "    " << s;
        }
        if (!c.under_examples.empty()) {
            out << "\n  fewer than R copies (first " << c.under_examples.size() << "):\n";
            for (const auto& s : c.under_examples) out << "    " << s << "\n";
        }
        if (!logs_dir_.empty()) out << "\n  hosts' logs kept in " << logs_dir_ << "\n";
        out << "\nRESULT: " << (passed() ? "PASS" : "FAIL") << " (seed " << config_.seed << ")\n";
        std::cout << out.str() << std::flush;
    }

    void report_json() const {
        const auto heal = heal_summary();
        const auto& c = final_;
        std::ostringstream out;
        out << "{\"seed\":" << config_.seed << ",\"hosts\":" << config_.hosts
            << ",\"duration_s\":" << config_.duration_s << ",\"keys\":" << config_.keys
            << ",\"replicas\":" << config_.replicas << ",\"write_acks\":" << config_.write_acks
            << ",\"cut_max_ms\":" << config_.cut_max_ms
            << ",\"pass\":" << (passed() ? "true" : "false")
            << ",\"interrupted\":" << (g_interrupted ? "true" : "false")
            << ",\"setup_error\":" << json_string(setup_error_)
            << ",\"operations\":" << stats_.operations() << ",\"puts\":" << stats_.puts
            << ",\"deletes\":" << stats_.dels << ",\"gets\":" << stats_.gets
            << ",\"acknowledged\":" << stats_.writes_acked
            << ",\"failed_writes\":" << stats_.writes_failed
            << ",\"failed_reads\":" << stats_.reads_failed << ",\"lost\":" << c.lost
            << ",\"unreadable\":" << c.unreadable << ",\"keys_read\":" << c.keys_read
            << ",\"stale_reads\":" << stats_.stale << ",\"faults\":{";
        bool first = true;
        for (const auto& [kind, n] : faults_by_kind()) {
            out << (first ? "" : ",") << json_string(kind) << ":" << n.first;
            first = false;
        }
        out << "},\"heal_ms\":{\"median\":" << fixed(heal.median_ms, 0)
            << ",\"max\":" << fixed(heal.max_ms, 0) << ",\"healed\":" << heal.healed
            << ",\"measured\":" << heal.measured << "},\"fault_log\":[";
        for (std::size_t i = 0; i < faults_.size(); ++i) {
            const auto& f = faults_[i];
            out << (i ? "," : "") << "{\"kind\":" << json_string(f.kind)
                << ",\"target\":" << json_string(f.target) << ",\"at_s\":" << fixed(f.at_s, 3)
                << ",\"took_ms\":" << fixed(f.took_ms, 0)
                << ",\"applied\":" << (f.applied ? "true" : "false")
                << ",\"error\":" << json_string(f.error)
                << ",\"heal_ms\":" << (f.heal_ms ? fixed(*f.heal_ms, 0) : std::string("null"))
                << ",\"unhealed\":" << json_string(f.unhealed)
                << ",\"failed_ops_after\":" << failures_after(i) << "}";
        }
        out << "],\"final\":{\"reached\":" << (c.reached ? "true" : "false")
            << ",\"ring_ideal\":" << (c.ring_ideal ? "true" : "false")
            << ",\"ring_s\":" << fixed(c.ring_s, 1)
            << ",\"ring_problem\":" << json_string(c.ring_problem)
            << ",\"ring_ideal_at_end\":" << (c.ring_ideal_at_end ? "true" : "false")
            << ",\"copies_scanned\":" << (c.copies_scanned ? "true" : "false")
            << ",\"repair_s\":" << fixed(c.repair_s, 1)
            << ",\"keys_with_copies\":" << c.keys_with_copies_required
            << ",\"at_least_r\":" << c.at_least_r << ",\"exactly_r\":" << c.exactly_r
            << ",\"more_than_r\":" << c.more_than_r << ",\"fewer_than_r\":" << c.fewer_than_r
            << ",\"divergent\":" << c.divergent << "},\"stale\":[";
        for (std::size_t i = 0; i < stale_reads_.size(); ++i) {
            const auto& s = stale_reads_[i];
            out << (i ? "," : "") << "{\"at_s\":" << fixed(s.at_s, 3)
                << ",\"key\":" << json_string(key_name(s.key))
                << ",\"got\":" << json_string(describe(s.got)) << ",\"version\":" << s.version
                << ",\"expected\":" << json_string(s.expected)
                << ",\"after_fault\":" << json_string(fault_before(s.at_s))
                << ",\"owner\":" << json_string(s.owner) << "}";
        }
        out << "],\"lost_examples\":[";
        for (std::size_t i = 0; i < c.lost_examples.size(); ++i) {
            out << (i ? "," : "") << json_string(c.lost_examples[i]);
        }
        out << "],\"logs\":" << json_string(logs_dir_) << "}\n";
        std::cout << out.str() << std::flush;
    }

    Config config_;
    std::mt19937_64 rng_;  // the fault schedule's; the workload threads seed their own
    KeyOracle oracle_;
    HostCluster cluster_;
    Membership membership_;
    Clock::time_point t0_;
    std::atomic<bool> stop_workload_{false};
    static constexpr int kFailureProbesPerFault = 3;
    std::atomic<int> failure_probes_left_{kFailureProbesPerFault};
    std::mutex log_mutex_;
    std::mutex stale_mutex_;
    std::vector<StaleRead> stale_reads_;
    WorkloadStats stats_;
    std::vector<FaultRecord> faults_;
    double fault_phase_start_s_ = 0;
    double fault_phase_s_ = 0;
    FinalCheck final_;
    std::string setup_error_;
    std::string logs_dir_;
};

}  // namespace
}  // namespace chordkv::chaos

int main(int argc, char** argv) {
    using chordkv::chaos::Config;
    Config c;
    std::string faults = "kill,restart,add,leave,cut,partition";
    std::uint64_t seed = 0;
    po::options_description flags("chordkv-chaos options");
    flags.add_options()("help,h", "show this help")                                              //
        ("hosts", po::value(&c.hosts)->default_value(c.hosts), "hosts to start")                 //
        ("seed", po::value(&seed), "seed of the fault schedule and workload (default: random)")  //
        ("duration", po::value(&c.duration_s)->default_value(c.duration_s),
         "seconds of faults (and workload)")                                          //
        ("keys", po::value(&c.keys)->default_value(c.keys), "size of the key space")  //
        ("state", po::value(&c.state_dir),
         "chord-cluster state dir (default /tmp/chordkv-chaos-PID); removed at the end")  //
        ("threads", po::value(&c.threads)->default_value(c.threads),
         "workload threads, each with its own keys")  //
        ("rate", po::value(&c.ops_per_second)->default_value(c.ops_per_second),
         "workload operations per second, all threads together")  //
        ("ops-max", po::value(&c.ops_max)->default_value(c.ops_max),
         "operations per thread at most")  //
        ("put-percent", po::value(&c.put_percent)->default_value(c.put_percent),
         "share of puts; the rest after deletes are gets")  //
        ("del-percent", po::value(&c.del_percent)->default_value(c.del_percent),
         "share of deletes")  //
        ("fault-gap-min", po::value(&c.gap_min_ms)->default_value(c.gap_min_ms),
         "least milliseconds from a fault's heal to the next fault")  //
        ("fault-gap-max", po::value(&c.gap_max_ms)->default_value(c.gap_max_ms),
         "most milliseconds from a fault's heal to the next fault")  //
        ("cut-max", po::value(&c.cut_max_ms)->default_value(c.cut_max_ms),
         "longest link cut or partition in milliseconds (each lasts 1/3 to all of it)")  //
        ("faults", po::value(&faults)->default_value(faults),
         "fault kinds to inject, comma-separated")  //
        ("heal-deadline", po::value(&c.heal_deadline_s)->default_value(c.heal_deadline_s),
         "seconds to wait for the ideal ring after each fault")  //
        ("final-ring-deadline",
         po::value(&c.final_ring_deadline_s)->default_value(c.final_ring_deadline_s),
         "seconds to wait for the ideal ring at the start and the end")  //
        ("repair-deadline", po::value(&c.repair_deadline_s)->default_value(c.repair_deadline_s),
         "seconds to wait at the end for every key to have R copies")  //
        ("exact-wait", po::value(&c.exact_wait_s)->default_value(c.exact_wait_s),
         "seconds to keep waiting for exactly R copies once every key has at least R")            //
        ("replicas", po::value(&c.replicas)->default_value(c.replicas), "chordd --replicas (R)")  //
        ("write-acks", po::value(&c.write_acks)->default_value(c.write_acks),
         "chordd --write-acks (W)")  //
        ("successors", po::value(&c.successors)->default_value(c.successors),
         "chordd --successors")  //
        ("repair-interval", po::value(&c.repair_interval_ms)->default_value(c.repair_interval_ms),
         "chordd --repair-interval (ms)")                                             //
        ("vnodes", po::value(&c.vnodes)->default_value(c.vnodes), "vnodes per host")  //
        ("subnet", po::value(&c.subnet)->default_value(c.subnet),
         "chord-cluster SUBNET (hosts are SUBNET.10+I)")                           //
        ("port", po::value(&c.port)->default_value(c.port), "chord-cluster PORT")  //
        ("client-timeout", po::value(&c.client_timeout_ms)->default_value(c.client_timeout_ms),
         "milliseconds the workload's clients wait for each request")  //
        ("chord-cluster", po::value(&c.script)->default_value(c.script),
         "the chord-cluster script")                                                    //
        ("chordd", po::value(&c.chordd)->default_value(c.chordd), "the chordd binary")  //
        ("json", po::bool_switch(&c.json), "print the report as JSON")                  //
        ("keep-logs", po::bool_switch(&c.keep_logs),
         "keep the hosts' logs in STATE.logs even when the run passes (always on failure)");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, flags), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "chordkv-chaos: " << e.what() << "\n" << flags;
        return chordkv::chaos::kExitUsage;
    }
    if (vm.count("help")) {
        std::cout << flags;
        return chordkv::chaos::kExitPass;
    }
    c.seed = vm.count("seed") ? seed : std::random_device{}();
    // The seed first: a failing run is reproduced with it (on stderr with --json, so that
    // stdout is one JSON object).
    (c.json ? std::cerr : std::cout) << "chordkv-chaos: seed " << c.seed << std::endl;

    std::stringstream kinds(faults);
    for (std::string kind; std::getline(kinds, kind, ',');) {
        if (kind.empty()) continue;
        if (std::find(chordkv::chaos::kFaultKinds.begin(), chordkv::chaos::kFaultKinds.end(),
                      kind) == chordkv::chaos::kFaultKinds.end()) {
            std::cerr << "chordkv-chaos: unknown fault kind '" << kind << "'\n";
            return chordkv::chaos::kExitUsage;
        }
        c.faults.insert(kind);
    }
    if (c.hosts < c.replicas + 2 || c.keys == 0 || c.threads < 1 || c.duration_s < 0 ||
        c.ops_per_second <= 0 || c.replicas < 1 || c.write_acks < 1 || c.write_acks > c.replicas ||
        c.put_percent < 0 || c.del_percent < 0 || c.put_percent + c.del_percent > 100 ||
        c.gap_min_ms < 0 || c.cut_max_ms < 1) {
        std::cerr << "chordkv-chaos: bad flags: need hosts >= replicas + 2, 1 <= write-acks <= "
                     "replicas, keys, threads and rate > 0, put + del percent <= 100\n";
        return chordkv::chaos::kExitUsage;
    }
    if (c.state_dir.empty()) c.state_dir = "/tmp/chordkv-chaos-" + std::to_string(::getpid());
    c.state_dir = std::filesystem::absolute(c.state_dir).string();

    chordkv::chaos::install_signal_handlers();
    try {
        chordkv::chaos::ChaosRun run(c);
        return run.run();
    } catch (const std::exception& e) {
        // ChaosRun's destructor has stopped the cluster (HostCluster::~HostCluster).
        std::cerr << "chordkv-chaos: " << e.what() << " (seed " << c.seed << ")\n";
        return chordkv::chaos::kExitFail;
    }
}
