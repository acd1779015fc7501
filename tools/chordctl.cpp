// chordctl: talk to a chordkv cluster through any of its nodes.
//
//   chordctl [--node HOST:PORT] [--json] [--timeout MS] ring
//   chordctl [--node HOST:PORT] [--json] [--timeout MS] lookup KEY
//   chordctl [--node HOST:PORT] [--json] [--timeout MS] [--no-key-count] stats
//   chordctl [--node HOST:PORT] put KEY VALUE|-      (- reads the value from stdin)
//   chordctl [--node HOST:PORT] [--quorum] get KEY   (raw value on stdout)
//   chordctl [--node HOST:PORT] del KEY
//   chordctl [--node HOST:PORT] [--json] [--window N] load FILE|-
//                                                    (KEY<TAB>VALUE lines; - reads stdin)
//   chordctl [--node HOST:PORT] [--json] dump        (every live key, KEY<TAB>VALUE lines)
//   chordctl [--node HOST:PORT] [--json] leave       (the node hands off its keys and exits)
//
// load and dump share one line format, escaped so keys and values may hold any byte
// (tools/bulk.hpp): \\ \t \n \r, \xHH for the other bytes below 0x20 and 0x7f..0xff.
// Both print progress on stderr when it is a terminal and a one-line summary on stderr at the
// end (load with --json: the summary as JSON on stdout; dump with --json: as JSON on stderr,
// since stdout holds the records).
//
// Exit codes: 0 success, 1 get: not found, 2 error (bad usage, unreachable node, broken ring;
// load: any line not stored; dump: the ring is not settled or an arc could not be read).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "chord/node_id.hpp"
#include "chord/placement.hpp"
#include "chord/protocol.hpp"
#include "net/admin_codec.hpp"
#include "net/cluster_key.hpp"
#include "net/peer_pool.hpp"
#include "net/request_client.hpp"
#include "node/client.hpp"
#include "tools/bulk.hpp"

namespace po = boost::program_options;
using chordkv::Errc;
using chordkv::Error;
using chordkv::Result;
using chordkv::chord::NodeId;
using chordkv::chord::Peer;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
// Redirects followed before giving up (the ring is changing faster than we can follow).
constexpr int kRedirectsMax = 4;
constexpr int kExitError = 2;
// A walk longer than this is not a ring we can print (or is a loop that never closes).
constexpr std::size_t kRingVnodesMax = 1'000'000;

struct Settings {
    std::string node = "127.0.0.1:7400";
    bool json = false;
    std::chrono::milliseconds timeout{5000};
    std::string cluster_key;  // empty: frames carry no MAC
    bool quorum = false;
    bool count_keys = true;  // stats: count each vnode's keys
};

std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
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
            case '\r':
                out += "\\r";
                break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out.push_back(static_cast<char>(c));
                }
        }
    }
    return out + "\"";
}

std::string json_peer(const Peer& p) {
    return "{\"id\":" + json_string(p.id.to_hex()) + ",\"address\":" + json_string(p.address) + "}";
}

const char* state_name(std::uint8_t state) {
    if (state > static_cast<std::uint8_t>(chordkv::chord::MemberState::left)) return "unknown";
    return chordkv::chord::member_state_name(static_cast<chordkv::chord::MemberState>(state));
}

int fail(const std::string& message) {
    std::cerr << "chordctl: " << message << "\n";
    return kExitError;
}

// The frame's message as T, the node's ErrorReply as an error with its code and message, or
// malformed_message for any other type. `address` names the sender in messages.
template <typename T>
Result<T> reply_as(const chordkv::net::Frame& frame, const std::string& address) {
    if (frame.type == chordkv::net::admin_type<chordkv::net::ErrorReply>()) {
        auto e = chordkv::net::decode_admin<chordkv::net::ErrorReply>(frame.payload);
        if (!e) return Result<T>(e.error());
        return Result<T>(Errc(e->code), address + ": " + e->message);
    }
    if (frame.type != chordkv::net::admin_type<T>()) {
        return Result<T>(Errc::malformed_message,
                         address + " answered with type " + std::to_string(frame.type));
    }
    return chordkv::net::decode_admin<T>(frame.payload);
}

// Sends `request` and decodes the reply as T (or the node's ErrorReply).
template <typename T, typename Request>
Result<T> ask(chordkv::net::RequestClient& client, const Request& request,
              std::chrono::milliseconds timeout) {
    auto frame = client.call(chordkv::net::encode_admin(request, client.key()), timeout);
    if (!frame) return Result<T>(frame.error());
    return reply_as<T>(*frame, client.address());
}

// keys: also count each vnode's keys (stats; the node reads every key's header).
Result<chordkv::net::InfoReply> fetch_info(const std::string& address, const Settings& s,
                                           bool keys = false) {
    auto client = chordkv::net::RequestClient::connect(address, s.timeout, s.cluster_key);
    if (!client) return Result<chordkv::net::InfoReply>(client.error());
    return ask<chordkv::net::InfoReply>(**client, chordkv::net::InfoRequest{1, keys}, s.timeout);
}

// One vnode met on the ring walk: where it lives and what its process says about it.
struct RingRow {
    Peer self;
    chordkv::net::VnodeInfo info;
};

struct RingView {
    std::vector<RingRow> rows;  // in ring order, starting at a member vnode of --node
    std::map<std::string, chordkv::net::InfoReply> processes;  // by address
};

// Walks successor pointers from a member vnode of s.node until the walk closes, asking each
// process once (InfoRequest). Errors: any failure, with the whole message for people as the
// detail (unreachable for a process that does not answer, malformed_message for a ring that
// does not close or a process that contradicts itself).
Result<RingView> walk_ring(const Settings& s) {
    using R = Result<RingView>;
    RingView view;
    auto info_of = [&](const std::string& address) -> Result<const chordkv::net::InfoReply*> {
        if (auto it = view.processes.find(address); it != view.processes.end()) {
            return &it->second;
        }
        auto info = fetch_info(address, s);
        if (!info) return Result<const chordkv::net::InfoReply*>(info.error());
        return &view.processes.emplace(address, std::move(info).value()).first->second;
    };
    auto first = info_of(s.node);
    if (!first) return R(Errc::unreachable, first.error().message());
    const chordkv::net::VnodeInfo* start = nullptr;
    for (const auto& v : (*first)->vnodes) {
        if (v.state == static_cast<std::uint8_t>(chordkv::chord::MemberState::member)) {
            start = &v;
            break;
        }
    }
    if (!start) return R(Errc::unreachable, s.node + " has no vnode that is a ring member");
    const NodeId start_id = start->id;

    std::set<NodeId> seen;
    Peer at{start_id, (*first)->address};
    for (;;) {
        if (seen.count(at.id) > 0) {
            if (at.id != start_id) {
                return R(Errc::malformed_message, "the ring does not close: the walk from " +
                                                      start_id.short_hex() + " loops back to " +
                                                      at.id.short_hex());
            }
            break;
        }
        if (view.rows.size() >= kRingVnodesMax) {
            return R(Errc::malformed_message, "ring walk exceeded its bound");
        }
        auto info = info_of(at.address);
        if (!info) {
            return R(Errc::unreachable,
                     "ring walk reached " + at.address + ": " + info.error().message());
        }
        const chordkv::net::VnodeInfo* v = nullptr;
        for (const auto& candidate : (*info)->vnodes) {
            if (candidate.id == at.id) v = &candidate;
        }
        if (!v) return R(Errc::malformed_message, at.address + " has no vnode " + at.id.to_hex());
        if (v->successors.empty()) {
            return R(Errc::malformed_message, "vnode " + at.id.to_hex() + " has no successor");
        }
        seen.insert(at.id);
        view.rows.push_back(RingRow{at, *v});
        at = v->successors.front();
    }
    return view;
}

int cmd_ring(const Settings& s) {
    auto view = walk_ring(s);
    if (!view) return fail(view.error().detail());
    const auto& rows = view->rows;
    const auto& processes = view->processes;

    // Share of the ring: the arc (previous vnode in the walk, vnode].
    std::vector<double> shares(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& prev = rows[(i + rows.size() - 1) % rows.size()].self.id;
        shares[i] = chordkv::chord::ring_share(prev, rows[i].self.id);
    }
    if (s.json) {
        std::cout << "[";
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const auto& r = rows[i];
            std::cout << (i ? ",\n " : "\n ") << "{\"id\":" << json_string(r.self.id.to_hex())
                      << ",\"address\":" << json_string(r.self.address) << ",\"predecessor\":"
                      << (r.info.predecessor ? json_peer(*r.info.predecessor) : "null")
                      << ",\"successors\":[";
            for (std::size_t j = 0; j < r.info.successors.size(); ++j) {
                std::cout << (j ? "," : "") << json_peer(r.info.successors[j]);
            }
            std::cout << "],\"share\":" << shares[i] << "}";
        }
        std::cout << "\n]\n";
        return kExitOk;
    }
    std::printf("%-12s %-22s %-12s %-12s %8s\n", "vnode", "address", "predecessor", "successor",
                "share");
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        std::printf("%-12s %-22s %-12s %-12s %7.2f%%\n", r.self.id.short_hex(10).c_str(),
                    r.self.address.c_str(),
                    r.info.predecessor ? r.info.predecessor->id.short_hex(10).c_str() : "-",
                    r.info.successors.front().id.short_hex(10).c_str(), 100.0 * shares[i]);
    }
    std::printf("%zu vnodes on %zu processes\n", rows.size(), processes.size());
    // Each process's share: how evenly the load falls (--vnode-placement).
    std::map<NodeId, std::string> ring;
    for (const auto& r : rows) ring.emplace(r.self.id, r.self.address);
    for (const auto& [address, share] : chordkv::chord::ring_shares(ring)) {
        std::printf("%-22s %7.2f%%\n", address.c_str(), 100.0 * share);
    }
    return kExitOk;
}

int cmd_lookup(const Settings& s, const std::string& key) {
    auto client = chordkv::net::RequestClient::connect(s.node, s.timeout, s.cluster_key);
    if (!client) return fail(client.error().message());
    auto reply =
        ask<chordkv::net::LookupReply>(**client, chordkv::net::LookupRequest{1, key}, s.timeout);
    if (!reply) return fail("lookup: " + reply.error().message());
    if (s.json) {
        std::cout << "{\"key_id\":" << json_string(reply->key_id.to_hex())
                  << ",\"owner\":" << json_peer(reply->owner) << ",\"hops\":" << reply->hops
                  << ",\"timeouts\":" << reply->timeouts << ",\"replicas\":[";
        for (std::size_t i = 0; i < reply->replicas.size(); ++i) {
            std::cout << (i ? "," : "") << json_peer(reply->replicas[i]);
        }
        std::cout << "]}\n";
        return kExitOk;
    }
    std::cout << "key id  " << reply->key_id.to_hex() << "\n"
              << "owner   " << reply->owner.id.to_hex() << " at " << reply->owner.address << "\n"
              << "hops    " << reply->hops << " (" << reply->timeouts << " timed out)\n";
    return kExitOk;
}

chordkv::Client client_for(const Settings& s) {
    chordkv::ClientOptions options;
    options.seeds = {s.node};
    options.timeout = s.timeout;
    options.cluster_key = s.cluster_key;
    options.redirects_max = kRedirectsMax;
    return chordkv::Client(options);
}

int cmd_put(const Settings& s, const std::string& key, const std::string& value, bool del) {
    auto client = client_for(s);
    auto version = del ? client.del(key) : client.put(key, value);
    if (!version) return fail((del ? "del: " : "put: ") + version.error().message());
    if (s.json) std::cout << "{\"version\":" << *version << "}\n";
    return kExitOk;
}

int cmd_get(const Settings& s, const std::string& key) {
    auto client = client_for(s);
    auto result = client.get(key, s.quorum);
    if (!result) return fail("get: " + result.error().message());
    if (!result->found) return kExitNotFound;
    std::cout.write(result->value.data(), static_cast<std::streamsize>(result->value.size()));
    std::cout.flush();
    return kExitOk;
}

int cmd_stats(const Settings& s) {
    auto info = fetch_info(s.node, s, s.count_keys);
    if (!info) return fail(info.error().message());
    // Without the count, the key fields are left out (JSON) or said to be (text).
    const bool counted = info->keys_counted;
    std::uint64_t owned = 0;
    std::uint64_t replica = 0;
    for (const auto& v : info->vnodes) {
        owned += v.keys_owned;
        replica += v.replica_keys;
    }
    if (s.json) {
        std::cout << "{\"address\":" << json_string(info->address)
                  << ",\"version\":" << json_string(info->version)
                  << ",\"datagrams_received\":" << info->datagrams_received
                  << ",\"frames_dropped\":" << info->frames_dropped
                  << ",\"frames_unauthenticated\":" << info->frames_unauthenticated
                  << ",\"tcp_connections_dropped\":" << info->tcp_connections_dropped
                  << ",\"frames_replayed\":" << info->frames_replayed;
        if (counted) std::cout << ",\"keys_owned\":" << owned << ",\"replica_keys\":" << replica;
        std::cout << ",\"repair_rounds\":" << info->repair_rounds
                  << ",\"tombstones_purged\":" << info->tombstones_purged
                  << ",\"copies_dropped\":" << info->copies_dropped
                  << ",\"expired_writes\":" << info->expired_writes << ",\"vnodes\":[";
        for (std::size_t i = 0; i < info->vnodes.size(); ++i) {
            const auto& v = info->vnodes[i];
            std::cout << (i ? "," : "") << "\n {\"id\":" << json_string(v.id.to_hex())
                      << ",\"state\":" << json_string(state_name(v.state))
                      << ",\"fingers_set\":" << v.fingers_set
                      << ",\"lookups_started\":" << v.lookups_started
                      << ",\"lookups_failed\":" << v.lookups_failed
                      << ",\"lookup_hops\":" << v.lookup_hops
                      << ",\"rpc_timeouts\":" << v.rpc_timeouts;
            if (counted) {
                std::cout << ",\"keys_owned\":" << v.keys_owned
                          << ",\"replica_keys\":" << v.replica_keys
                          << ",\"tombstones\":" << v.tombstones;
            }
            std::cout << ",\"handoff_keys_sent\":" << v.handoff_keys_sent
                      << ",\"handoff_keys_received\":" << v.handoff_keys_received
                      << ",\"repair_keys_sent\":" << v.repair_keys_sent
                      << ",\"repair_keys_received\":" << v.repair_keys_received
                      << ",\"arc_settled\":" << (v.arc_settled ? "true" : "false") << "}";
        }
        std::cout << "\n]}\n";
        return kExitOk;
    }
    std::cout << info->address << " (" << info->version << ")\n"
              << "datagrams received " << info->datagrams_received << ", frames dropped "
              << info->frames_dropped << ", unauthenticated " << info->frames_unauthenticated
              << "\n"
              << (counted ? "keys owned " + std::to_string(owned) + ", replica keys " +
                                std::to_string(replica)
                          : std::string("keys not counted (--no-key-count)"))
              << ", repair rounds " << info->repair_rounds << ", tombstones purged "
              << info->tombstones_purged << ", copies dropped " << info->copies_dropped
              << ", expired writes " << info->expired_writes << "\n";
    using ull = unsigned long long;
    for (const auto& v : info->vnodes) {
        std::printf(
            "  %s %-8s fingers %3u lookups %llu (failed %llu) rpc timeouts %llu\n"
            "             keys owned %llu, replica %llu, tombstones %llu; handoff sent %llu "
            "received %llu; repair sent %llu received %llu%s\n",
            v.id.short_hex(10).c_str(), state_name(v.state), v.fingers_set,
            static_cast<ull>(v.lookups_started), static_cast<ull>(v.lookups_failed),
            static_cast<ull>(v.rpc_timeouts), static_cast<ull>(v.keys_owned),
            static_cast<ull>(v.replica_keys), static_cast<ull>(v.tombstones),
            static_cast<ull>(v.handoff_keys_sent), static_cast<ull>(v.handoff_keys_received),
            static_cast<ull>(v.repair_keys_sent), static_cast<ull>(v.repair_keys_received),
            v.arc_settled ? "" : " (arc being synced)");
    }
    return kExitOk;
}

// --- load, dump, leave -------------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

// Puts outstanding at once: the default of --window, and its bound (a PeerPool connection
// refuses more than its inflight_per_peer_max).
constexpr std::size_t kLoadWindowDefault = 64;
constexpr std::size_t kLoadWindowMax = 4096;
// Key and value bytes held by outstanding puts; past it load waits for replies before it
// reads on (one put is always allowed, however large).
constexpr std::size_t kLoadInflightBytesMax = std::size_t{64} << 20;
// Attempts per key (ErrorReply, timeout, lost connection, too many redirects) before the key
// counts as failed; attempt n waits n × kRetryBackoff first.
constexpr int kAttemptsMax = 3;
constexpr std::chrono::milliseconds kRetryBackoff{200};
// Vnode id → address entries learned from redirects; past it the cache starts over.
constexpr std::size_t kOwnerCacheMax = 4096;
// Dump: keys asked per page, and arcs scanned at once.
constexpr std::uint32_t kDumpBatchKeysMax = 512;
constexpr std::size_t kDumpArcsInflight = 4;
// Leave waits for the handoff, which takes longer than one request.
constexpr std::chrono::milliseconds kLeaveTimeoutMin{60'000};
// The progress line on a terminal is redrawn at most this often.
constexpr std::chrono::milliseconds kProgressInterval{100};

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

double per_second(std::uint64_t n, double seconds) {
    return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

std::string mib(std::uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

// The pipelined client of load and dump: every request bounded by --timeout.
chordkv::net::PeerPoolOptions pool_options(const Settings& s) {
    chordkv::net::PeerPoolOptions o;
    o.cluster_key = s.cluster_key;
    o.connect_timeout = s.timeout;
    o.request_timeout = s.timeout;
    return o;
}

// A progress line on stderr, redrawn in place by a timer, when stderr is a terminal (and
// nothing at all otherwise). `line` is asked for the text at each tick.
class ProgressLine {
public:
    ProgressLine(boost::asio::io_context& io, std::function<std::string()> line)
        : timer_(io), line_(std::move(line)), enabled_(::isatty(STDERR_FILENO) == 1) {}

    void start() {
        if (enabled_) arm();
    }
    // Erases the line so that a message can be printed; the next tick draws it again.
    void clear() {
        if (!enabled_ || !drawn_) return;
        drawn_ = false;
        std::fputs("\r\033[K", stderr);
    }
    // Stops the timer and erases the line.
    void stop() {
        if (!enabled_ || stopped_) return;
        stopped_ = true;
        timer_.cancel();
        clear();
        std::fflush(stderr);
    }

private:
    void arm() {
        timer_.expires_after(kProgressInterval);
        timer_.async_wait([this](boost::system::error_code ec) {
            if (ec || stopped_) return;
            std::fputs(("\r" + line_() + "\033[K").c_str(), stderr);
            std::fflush(stderr);
            drawn_ = true;
            arm();
        });
    }

    boost::asio::steady_timer timer_;
    std::function<std::string()> line_;
    bool enabled_;
    bool stopped_ = false;
    bool drawn_ = false;
};

// Work deferred to a point in time (retries after a backoff): one steady_timer armed to the
// earliest item. Each item runs once, on the io_context's thread, unless clear() drops it.
class RetryQueue {
public:
    explicit RetryQueue(boost::asio::io_context& io) : timer_(io) {}

    void at(Clock::time_point when, std::function<void()> work) {
        items_.emplace(when, std::move(work));
        arm();
    }
    void clear() {
        items_.clear();
        timer_.cancel();
    }

private:
    void arm() {
        if (items_.empty()) {
            timer_.cancel();
            return;
        }
        timer_.expires_at(items_.begin()->first);
        timer_.async_wait([this](boost::system::error_code ec) {
            if (ec) return;  // re-armed or cleared
            const auto now = Clock::now();
            std::vector<std::function<void()>> due;
            while (!items_.empty() && items_.begin()->first <= now) {
                due.push_back(std::move(items_.begin()->second));
                items_.erase(items_.begin());
            }
            arm();
            for (auto& work : due) work();
        });
    }

    boost::asio::steady_timer timer_;
    std::multimap<Clock::time_point, std::function<void()>> items_;
};

struct LoadTotals {
    std::uint64_t lines = 0;
    std::uint64_t loaded = 0;
    std::uint64_t failed = 0;  // lines not stored: malformed, refused, or out of attempts
    bool input_error = false;
    double seconds = 0;
};

// `chordctl load`: streams records from a LineReader into the cluster with up to `window`
// puts outstanding.
//
//   read line ─► parse ─► parked ─► (window, bytes and key free) ─► send ─► PutReply: stored
//                  │ bad: "line N: why"                     ▲        ├─► Redirect: learn the
//                  ▼                                        │        │   owner, resend there
//               failed                                      │        └─► error, timeout:
//                                                           └─ RetryQueue (n × backoff) ◄─┘
//
// A put goes to the cached owner of its key (the first learned vnode id at or after the key's
// id, as in successor()) or, with nothing cached, to --node. A key already outstanding holds
// the reading back until its put completes, so when a key appears on several lines the last
// line wins, as it would if the file were loaded one line at a time. Reading the input blocks
// the io_context's thread; a stalled stdin delays reply handling (at worst a put times out
// and is sent again, which is harmless: the same value wins).
class Loader {
public:
    Loader(const Settings& s, std::size_t window, chordkv::tools::LineReader& reader,
           std::optional<std::uint64_t> input_bytes)
        : settings_(s),
          window_(window),
          reader_(reader),
          input_bytes_(input_bytes),
          pool_(io_, pool_options(s)),
          retries_(io_),
          progress_(io_, [this] { return progress_text(); }) {}

    LoadTotals run() {
        started_ = Clock::now();
        progress_.start();
        fill();
        io_.run();
        totals_.seconds = seconds_since(started_);
        return totals_;
    }

private:
    struct Put {
        std::uint64_t line = 0;
        std::string key;
        std::string value;
        NodeId key_id;
        int attempts = 0;   // attempts that failed
        int redirects = 0;  // redirects followed in the current attempt
        std::string target;
        bool target_cached = false;  // target came from the owner cache
    };
    using PutPtr = std::shared_ptr<Put>;

    void report(std::uint64_t line, const std::string& why) {
        progress_.clear();
        std::cerr << "chordctl: line " << line << ": " << why << "\n";
        ++totals_.failed;
    }

    // The next record of the input into parked_; false at its end (or a read error). Bad
    // lines are reported and counted on the way.
    bool read_record() {
        while (!input_done_) {
            auto next = reader_.next();
            if (!next) {
                progress_.clear();
                std::cerr << "chordctl: reading the input: " << next.error().detail() << "\n";
                totals_.input_error = true;
                input_done_ = true;
                break;
            }
            if (!*next) {
                input_done_ = true;
                break;
            }
            const auto& line = **next;
            totals_.lines = line.number;
            if (line.too_long) {
                report(line.number, "longer than " + std::to_string(line_max_) + " bytes");
                continue;
            }
            if (line.text.empty()) continue;
            auto record = chordkv::tools::parse_record_line(line.text);
            if (!record) {
                report(line.number, record.error().detail());
                continue;
            }
            auto put = std::make_shared<Put>();
            put->line = line.number;
            put->key = std::move(record->key);
            put->value = std::move(record->value);
            put->key_id = NodeId::hash(put->key);
            parked_ = std::move(put);
            return true;
        }
        return false;
    }

    // Starts puts while the window, the byte bound and the keys outstanding allow.
    void fill() {
        for (;;) {
            if (!parked_ && !read_record()) break;
            const std::size_t bytes = parked_->key.size() + parked_->value.size();
            if (inflight_ >= window_) break;
            if (inflight_ > 0 && inflight_bytes_ + bytes > kLoadInflightBytesMax) break;
            if (keys_inflight_.count(parked_->key_id) > 0) break;
            ++inflight_;
            inflight_bytes_ += bytes;
            keys_inflight_.insert(parked_->key_id);
            PutPtr put = std::move(parked_);
            parked_.reset();
            send(put, route(*put));
        }
        maybe_finish();
    }

    std::string route(Put& put) {
        put.target_cached = !owners_.empty();
        if (owners_.empty()) return settings_.node;
        auto it = owners_.lower_bound(put.key_id);
        if (it == owners_.end()) it = owners_.begin();
        return it->second;
    }

    void learn(const NodeId& owner, const std::string& address) {
        if (owners_.size() >= kOwnerCacheMax && owners_.count(owner) == 0) owners_.clear();
        owners_[owner] = address;
    }

    // Drops every cached owner at `address` (it failed to answer).
    void forget(const std::string& address) {
        for (auto it = owners_.begin(); it != owners_.end();) {
            it = it->second == address ? owners_.erase(it) : std::next(it);
        }
    }

    void send(const PutPtr& put, std::string target) {
        put->target = std::move(target);
        const std::string* key = pool_.key();
        pool_.call(
            put->target,
            [put, key, timeout = settings_.timeout](std::uint64_t rid) {
                return chordkv::net::encode_admin(
                    chordkv::net::PutRequest{rid, put->key, put->value, false,
                                             chordkv::net::deadline_after(timeout)},
                    key);
            },
            [this, put](Result<chordkv::net::Frame> reply) { on_reply(put, std::move(reply)); });
    }

    void on_reply(const PutPtr& put, Result<chordkv::net::Frame> reply) {
        if (finished_) return;
        if (!reply) {
            if (put->target_cached) forget(put->target);
            retry_later(put, reply.error());
            return;
        }
        if (reply->type == chordkv::net::admin_type<chordkv::net::Redirect>()) {
            auto redirect = chordkv::net::decode_admin<chordkv::net::Redirect>(reply->payload);
            if (!redirect || redirect->owner_address.empty()) {
                retry_later(put, redirect ? Error(Errc::malformed_message,
                                                  put->target + " redirected to no address")
                                          : redirect.error());
                return;
            }
            learn(redirect->owner_id, redirect->owner_address);
            if (++put->redirects > kRedirectsMax) {
                retry_later(put,
                            Error(Errc::unreachable, "more than " + std::to_string(kRedirectsMax) +
                                                         " redirects; the ring is changing"));
                return;
            }
            put->target_cached = true;
            send(put, redirect->owner_address);
            return;
        }
        auto stored = reply_as<chordkv::net::PutReply>(*reply, put->target);
        if (stored) {
            ++totals_.loaded;
            complete(*put);
            return;
        }
        if (stored.code() == Errc::too_large || stored.code() == Errc::invalid_argument) {
            report(put->line, "refused: " + stored.error().message());
            complete(*put);
            return;
        }
        retry_later(put, stored.error());
    }

    void retry_later(const PutPtr& put, const Error& why) {
        put->redirects = 0;
        if (++put->attempts >= kAttemptsMax) {
            report(put->line, "not stored after " + std::to_string(put->attempts) +
                                  " attempts: " + why.message());
            complete(*put);
            return;
        }
        retries_.at(Clock::now() + kRetryBackoff * put->attempts,
                    [this, put] { send(put, route(*put)); });
    }

    // A put is done (stored or failed): frees its place in the window.
    void complete(const Put& put) {
        --inflight_;
        inflight_bytes_ -= put.key.size() + put.value.size();
        keys_inflight_.erase(put.key_id);
        fill();
    }

    void maybe_finish() {
        if (finished_ || !input_done_ || parked_ || inflight_ > 0) return;
        finished_ = true;
        progress_.stop();
        retries_.clear();
        pool_.close();
    }

    std::string progress_text() const {
        const double seconds = seconds_since(started_);
        std::string text = std::to_string(totals_.loaded) + " keys stored, " +
                           std::to_string(totals_.failed) + " failed, " +
                           mib(reader_.bytes_read()) + " read";
        if (input_bytes_ && *input_bytes_ > 0) {
            text += " (" + std::to_string(100 * reader_.bytes_read() / *input_bytes_) + "%)";
        }
        char rate[48];
        std::snprintf(rate, sizeof rate, ", %.0f keys/s", per_second(totals_.loaded, seconds));
        return text + rate;
    }

    const Settings& settings_;
    const std::size_t window_;
    const std::size_t line_max_ = chordkv::tools::line_bytes_max({});
    chordkv::tools::LineReader& reader_;
    std::optional<std::uint64_t> input_bytes_;
    boost::asio::io_context io_{1};  // one thread runs it
    chordkv::net::PeerPool pool_;
    RetryQueue retries_;
    ProgressLine progress_;
    Clock::time_point started_;

    PutPtr parked_;  // read, not sent yet
    bool input_done_ = false;
    bool finished_ = false;
    std::size_t inflight_ = 0;  // puts started and not complete (waiting retries included)
    std::size_t inflight_bytes_ = 0;
    std::unordered_set<NodeId> keys_inflight_;
    std::map<NodeId, std::string> owners_;  // vnode id → address, from redirects
    LoadTotals totals_;
};

int cmd_load(const Settings& s, const std::string& path, std::size_t window) {
    std::FILE* in = stdin;
    std::optional<std::uint64_t> input_bytes;
    if (path != "-") {
        in = std::fopen(path.c_str(), "rb");
        if (!in) return fail("cannot open " + path + ": " + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(::fileno(in), &st) == 0 && S_ISREG(st.st_mode)) {
        input_bytes = static_cast<std::uint64_t>(st.st_size);
    }
    chordkv::tools::LineReader reader(in, chordkv::tools::line_bytes_max({}));
    LoadTotals totals;
    {
        Loader loader(s, window, reader, input_bytes);
        totals = loader.run();
    }
    if (in != stdin) std::fclose(in);

    const double rate = per_second(totals.loaded, totals.seconds);
    char summary[160];
    std::snprintf(summary, sizeof summary, "loaded %llu keys in %.1f s (%.0f keys/s), %llu failed",
                  static_cast<unsigned long long>(totals.loaded), totals.seconds, rate,
                  static_cast<unsigned long long>(totals.failed));
    std::cerr << summary << "\n";
    if (s.json) {
        std::cout << "{\"loaded\":" << totals.loaded << ",\"failed\":" << totals.failed
                  << ",\"lines\":" << totals.lines << ",\"seconds\":" << totals.seconds
                  << ",\"keys_per_second\":" << rate
                  << ",\"input_error\":" << (totals.input_error ? "true" : "false") << "}\n";
    }
    return totals.failed == 0 && !totals.input_error ? kExitOk : kExitError;
}

// One vnode's arc (from, to] and the process that owns it.
struct DumpArc {
    NodeId from;
    NodeId to;
    std::string address;
};

// The arcs of a settled ring: each vnode's (predecessor, self]. Errors (detail for people):
// the walk failed, a vnode has no predecessor yet, or a predecessor is not the vnode before
// it on the walk (the ring is changing, so the arcs would overlap or leave gaps).
Result<std::vector<DumpArc>> ring_arcs(const Settings& s, std::size_t& processes) {
    using R = Result<std::vector<DumpArc>>;
    auto view = walk_ring(s);
    if (!view) return R(view.error());
    processes = view->processes.size();
    const auto& rows = view->rows;
    std::vector<DumpArc> arcs;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& row = rows[i];
        const auto& before = rows[(i + rows.size() - 1) % rows.size()].self;
        if (!row.info.predecessor) {
            return R(Errc::unreachable, "vnode " + row.self.id.short_hex(10) + " at " +
                                            row.self.address +
                                            " has no predecessor yet (the ring is still "
                                            "forming); try again");
        }
        if (row.info.predecessor->id != before.id) {
            return R(Errc::unreachable,
                     "vnode " + row.self.id.short_hex(10) + " at " + row.self.address +
                         " has predecessor " + row.info.predecessor->id.short_hex(10) +
                         " but the ring walk reached it from " + before.id.short_hex(10) +
                         " (the ring is changing); try again");
        }
        arcs.push_back(DumpArc{row.info.predecessor->id, row.self.id, row.self.address});
    }
    return arcs;
}

struct DumpTotals {
    std::uint64_t keys = 0;
    std::uint64_t tombstones = 0;  // skipped
    std::size_t arcs_done = 0;
    std::optional<std::string> error;  // set: the dump is incomplete
    double seconds = 0;
};

// `chordctl dump`: pages through every arc on its owner (SyncScanRequest, purpose dump),
// up to kDumpArcsInflight arcs at once, writing live entries to `out` as they arrive. The
// first arc that cannot be read (after kAttemptsMax attempts) stops the dump.
class Dumper {
public:
    Dumper(const Settings& s, std::vector<DumpArc> arcs, std::FILE* out)
        : arcs_(std::move(arcs)),
          out_(out),
          pool_(io_, pool_options(s)),
          retries_(io_),
          progress_(io_, [this] { return progress_text(); }) {}

    DumpTotals run() {
        started_ = Clock::now();
        progress_.start();
        while (active_ < kDumpArcsInflight && next_arc_ < arcs_.size()) start_arc(next_arc_++);
        maybe_finish();
        io_.run();
        totals_.seconds = seconds_since(started_);
        return totals_;
    }

private:
    struct Scan {
        std::size_t arc = 0;
        std::optional<std::string> resume_after;
        int attempts = 0;  // failed attempts at the current page
    };
    using ScanPtr = std::shared_ptr<Scan>;

    void start_arc(std::size_t arc) {
        ++active_;
        auto scan = std::make_shared<Scan>();
        scan->arc = arc;
        request_page(scan);
    }

    void request_page(const ScanPtr& scan) {
        const DumpArc& arc = arcs_[scan->arc];
        const std::string* key = pool_.key();
        pool_.call(
            arc.address,
            [scan, &arc, key](std::uint64_t rid) {
                chordkv::net::SyncScanRequest request;
                request.request_id = rid;
                request.from_exclusive = arc.from;
                request.to_inclusive = arc.to;
                request.resume_after = scan->resume_after;
                request.batch_keys_max = kDumpBatchKeysMax;
                request.purpose = static_cast<std::uint8_t>(chordkv::net::SyncPurpose::dump);
                return chordkv::net::encode_admin(request, key);
            },
            [this, scan](Result<chordkv::net::Frame> reply) { on_page(scan, std::move(reply)); });
    }

    void on_page(const ScanPtr& scan, Result<chordkv::net::Frame> frame) {
        if (finished_) return;
        const DumpArc& arc = arcs_[scan->arc];
        Result<chordkv::net::SyncScanReply> page =
            frame ? reply_as<chordkv::net::SyncScanReply>(*frame, arc.address)
                  : Result<chordkv::net::SyncScanReply>(frame.error());
        if (!page) {
            if (++scan->attempts >= kAttemptsMax) {
                stop("arc (" + arc.from.short_hex(10) + ", " + arc.to.short_hex(10) + "] at " +
                     arc.address + " not read after " + std::to_string(scan->attempts) +
                     " attempts: " + page.error().message());
                return;
            }
            retries_.at(Clock::now() + kRetryBackoff * scan->attempts,
                        [this, scan] { request_page(scan); });
            return;
        }
        scan->attempts = 0;
        buffer_.clear();
        for (const auto& e : page->entries) {
            if (e.record.tombstone) {
                ++totals_.tombstones;
                continue;
            }
            chordkv::tools::append_record(buffer_, e.key, e.record.value);
            ++totals_.keys;
        }
        if (!buffer_.empty() &&
            std::fwrite(buffer_.data(), 1, buffer_.size(), out_) != buffer_.size()) {
            stop(std::string("writing the output: ") + std::strerror(errno));
            return;
        }
        if (page->resume_after) {
            if (page->entries.empty()) {
                stop(arc.address + " sent an empty page that is not the last");
                return;
            }
            scan->resume_after = std::move(page->resume_after);
            request_page(scan);
            return;
        }
        --active_;
        ++totals_.arcs_done;
        if (next_arc_ < arcs_.size()) start_arc(next_arc_++);
        maybe_finish();
    }

    void stop(const std::string& why) {
        totals_.error = why;
        finish();
    }

    void maybe_finish() {
        if (active_ == 0 && next_arc_ == arcs_.size()) finish();
    }

    void finish() {
        if (finished_) return;
        finished_ = true;
        progress_.stop();
        retries_.clear();
        pool_.close();
    }

    std::string progress_text() const {
        char text[128];
        std::snprintf(text, sizeof text, "%llu keys, %zu of %zu arcs, %.0f keys/s",
                      static_cast<unsigned long long>(totals_.keys), totals_.arcs_done,
                      arcs_.size(), per_second(totals_.keys, seconds_since(started_)));
        return text;
    }

    const std::vector<DumpArc> arcs_;
    std::FILE* out_;
    boost::asio::io_context io_{1};  // one thread runs it
    chordkv::net::PeerPool pool_;
    RetryQueue retries_;
    ProgressLine progress_;
    Clock::time_point started_;
    std::size_t next_arc_ = 0;
    std::size_t active_ = 0;
    bool finished_ = false;
    std::string buffer_;
    DumpTotals totals_;
};

int cmd_dump(const Settings& s) {
    std::size_t processes = 0;
    auto arcs = ring_arcs(s, processes);
    if (!arcs) return fail("dump: " + arcs.error().detail());
    const std::size_t arc_count = arcs->size();
    DumpTotals totals;
    {
        Dumper dumper(s, std::move(arcs).value(), stdout);
        totals = dumper.run();
    }
    if (std::fflush(stdout) != 0 && !totals.error) {
        totals.error = std::string("writing the output: ") + std::strerror(errno);
    }
    if (totals.error) return fail("dump incomplete: " + *totals.error);
    const double rate = per_second(totals.keys, totals.seconds);
    if (s.json) {
        std::cerr << "{\"keys\":" << totals.keys << ",\"tombstones_skipped\":" << totals.tombstones
                  << ",\"arcs\":" << arc_count << ",\"processes\":" << processes
                  << ",\"seconds\":" << totals.seconds << ",\"keys_per_second\":" << rate << "}\n";
    } else {
        char summary[160];
        std::snprintf(summary, sizeof summary,
                      "dumped %llu keys from %zu arcs on %zu processes in %.1f s (%.0f keys/s)",
                      static_cast<unsigned long long>(totals.keys), arc_count, processes,
                      totals.seconds, rate);
        std::cerr << summary << "\n";
    }
    return kExitOk;
}

int cmd_leave(const Settings& s) {
    const auto timeout = std::max(s.timeout, kLeaveTimeoutMin);
    auto client = chordkv::net::RequestClient::connect(s.node, s.timeout, s.cluster_key);
    if (!client) return fail("leave: " + client.error().message());
    auto reply = ask<chordkv::net::LeaveReply>(**client, chordkv::net::LeaveRequest{1}, timeout);
    if (!reply) return fail("leave: " + reply.error().message());
    if (s.json) {
        std::cout << "{\"keys_handed_off\":" << reply->keys_handed_off << "}\n";
    } else {
        std::cout << "leaving: " << reply->keys_handed_off << " keys handed off\n";
    }
    return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    std::int64_t timeout_ms = s.timeout.count();
    bool no_key_count = false;
    std::string key_file;
    std::vector<std::string> command;
    std::size_t window = kLoadWindowDefault;
    po::options_description flags(
        "chordctl [options] COMMAND\n"
        "\n"
        "Commands:\n"
        "  ring                 every vnode, its arc and its share of the ring\n"
        "  lookup KEY           the owner of KEY and the hops taken to find it\n"
        "  stats                the counters of --node\n"
        "  put KEY VALUE|-      store VALUE (- reads it from stdin)\n"
        "  get KEY              the raw value on stdout; exit 1 when not found\n"
        "  del KEY              delete KEY\n"
        "  load FILE|-          store every KEY<TAB>VALUE line of FILE (- reads stdin);\n"
        "                       exit 2 when any line is not stored\n"
        "  dump                 every live key as KEY<TAB>VALUE lines on stdout\n"
        "  leave                --node hands its keys off and leaves the ring\n"
        "\n"
        "load/dump lines escape keys and values: \\\\ \\t \\n \\r, and \\xHH for the other\n"
        "bytes below 0x20 and 0x7f..0xff; every other byte stands for itself.\n"
        "\n"
        "Options");
    flags.add_options()("help,h", "show this help")                                           //
        ("node", po::value(&s.node)->default_value(s.node), "HOST:PORT of any cluster node")  //
        ("json", po::bool_switch(&s.json), "machine-readable output")                         //
        ("timeout", po::value(&timeout_ms)->default_value(timeout_ms),
         "milliseconds to wait for each answer (leave: at least 60000)")                  //
        ("cluster-key-file", po::value(&key_file), "the cluster's key, when it has one")  //
        ("window", po::value(&window)->default_value(window),
         "load: puts outstanding at once (1..4096)")                                    //
        ("quorum", po::bool_switch(&s.quorum), "get: read every replica, newest wins")  //
        ("no-key-count", po::bool_switch(&no_key_count),
         "stats: leave out the key counts (the node reads every key's header for them, "
         "seconds at millions of keys)");
    po::options_description hidden;
    hidden.add_options()("command", po::value(&command));
    po::options_description all;
    all.add(flags).add(hidden);
    po::positional_options_description positional;
    positional.add("command", -1);
    try {
        po::variables_map vm;
        po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(),
                  vm);
        po::notify(vm);
        if (vm.count("help")) {
            std::cout << flags;
            return kExitOk;
        }
    } catch (const po::error& e) {
        return fail(std::string(e.what()));
    }
    if (timeout_ms <= 0) return fail("--timeout must be positive");
    if (!key_file.empty()) {
        auto key = chordkv::net::read_cluster_key_file(key_file);
        if (!key) return fail(key.error().message());
        s.cluster_key = std::move(key).value();
    }
    s.timeout = std::chrono::milliseconds(timeout_ms);
    s.count_keys = !no_key_count;
    if (window < 1 || window > kLoadWindowMax) return fail("--window must be within 1..4096");
    if (command.empty()) return fail("no command; try ring, lookup KEY or stats (--help)");
    const std::string& verb = command.front();
    if (verb == "ring" && command.size() == 1) return cmd_ring(s);
    if (verb == "stats" && command.size() == 1) return cmd_stats(s);
    if (verb == "lookup" && command.size() == 2) return cmd_lookup(s, command[1]);
    if (verb == "lookup") return fail("usage: chordctl lookup KEY");
    if (verb == "put" && command.size() == 3) {
        std::string value = command[2];
        if (value == "-") {
            value.assign(std::istreambuf_iterator<char>(std::cin), {});
        }
        return cmd_put(s, command[1], value, false);
    }
    if (verb == "get" && command.size() == 2) return cmd_get(s, command[1]);
    if (verb == "del" && command.size() == 2) return cmd_put(s, command[1], {}, true);
    if (verb == "put" || verb == "get" || verb == "del") {
        return fail("usage: chordctl put KEY VALUE|- | get KEY | del KEY");
    }
    if (verb == "load" && command.size() == 2) return cmd_load(s, command[1], window);
    if (verb == "dump" && command.size() == 1) return cmd_dump(s);
    if (verb == "leave" && command.size() == 1) return cmd_leave(s);
    if (verb == "load" || verb == "dump" || verb == "leave") {
        return fail("usage: chordctl load FILE|- | dump | leave");
    }
    return fail("unknown command '" + verb +
                "'; try ring, lookup, stats, put, get, del, load, dump or leave");
}
