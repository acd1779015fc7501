// chord-bench: an asynchronous load generator for a chordkv cluster, in the spirit of
// redis-benchmark.
//
//   chord-bench --nodes 127.0.0.1:7601,127.0.0.1:7602 [--clients 50] [--pipeline 1]
//               [--pipeline-mode batch|window] [--pin-clients]
//               [--requests 100000] [--duration S] [--keys 100000] [--value-bytes 100]
//               [--ratio 1:1] [--warmup-keys [N]] [--replicas R] [--threads 1] [--json]
//
//   ring walk (node/ring_view.hpp, once) ─► warm-up: put keys 0..N-1 (optional, not measured)
//     ─► measured run until --requests requests or --duration seconds, whichever comes first
//
//   client × --clients: its own TCP connection to each process (a Link)
//     └ --pipeline requests in flight, each: pick get or put (--ratio) and a key (uniform over
//       --keys) ─► the key's owner in the ring view ─► reply: latency into the op's histogram
//       ─► the next request. Redirect: learn the owner, resend there (bounded; the latency
//       includes the extra hop). Error: counted by kind; a process that does not answer is
//       dropped from the view, and a stale view is walked again (rate-limited), while the
//       requests go on.
//     └ --pipeline-mode: when "the next request" starts. batch (the default, as redis-benchmark
//       -P): a client sends its --pipeline requests together and starts the next batch when
//       the last reply of this one is in. window: each reply starts its request's successor
//       at once, so --pipeline requests are in flight all the time; replies arrive a few at a
//       time, so the client sends a few requests per send() and the nodes read as few per recv.
//     └ --pin-clients: client i draws its keys only from those the i-th process (round robin
//       over the processes of the ring view) owns, as redis-benchmark --cluster pins each
//       client's keys to one master with a hash tag; a client's pipeline then goes to one
//       process on one connection. Without it, keys are uniform over --keys, so a client's
//       batch spreads over every process.
//
// Threads (--threads T): T shards, each with its own io_context, ring view and 1/T of the
// clients, because a connection belongs to one thread; their counts are merged at the end.
//
// Connections: the data path's requests do not go through PeerPool, whose general machinery
// (a std::function, a map entry and a deadline-set entry per call, a posted write per turn, a
// copy of every reply) cost more CPU per pipelined get than the requests' encoding and the
// histograms together. A Link is one client's connection to one process: a request's id
// names its pipeline slot, so a reply finds its request by index; requests queue in one buffer
// that is written once per io turn; replies are decoded where they were read; one timer per
// shard times out requests (--timeout) and connects. The ring walks still use a PeerPool.
//
// Output: per operation: count, ops/s, p50, p99, p99.9, max latency and errors by kind; with
// --json the same as one JSON object on stdout. Exit 0 when every request succeeded, 1 when
// some failed, 2 on bad usage or when no seed answers.
#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "chord/node_id.hpp"
#include "net/address.hpp"
#include "net/admin_codec.hpp"
#include "net/cluster_key.hpp"
#include "net/codec.hpp"
#include "net/peer_pool.hpp"
#include "net/run_loop.hpp"
#include "net/self_connect.hpp"
#include "node/reply.hpp"
#include "node/ring_view.hpp"
#include "node/ring_walker.hpp"
#include "tools/histogram.hpp"

namespace po = boost::program_options;
using boost::asio::ip::tcp;
using chordkv::decode_reply;
using chordkv::Errc;
using chordkv::Error;
using chordkv::Result;
using chordkv::RingView;
using chordkv::RingWalk;
using chordkv::chord::NodeId;
using chordkv::net::Frame;
using chordkv::net::FrameView;
using chordkv::net::PeerPool;
using chordkv::tools::Histogram;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailures = 1;
constexpr int kExitError = 2;

// Bounds of the flags.
constexpr std::size_t kClientsMax = 1000;
constexpr std::size_t kPipelineMax = 1024;
constexpr std::size_t kThreadsMax = 8;
constexpr std::uint64_t kRequestsMax = 1'000'000'000;
constexpr std::uint64_t kKeysMax = 100'000'000;
constexpr std::size_t kValueBytesMax = std::size_t{1} << 20;
constexpr std::chrono::seconds kDurationMax{600};
constexpr std::uint32_t kBusyPollUsMax = 1'000'000;
// Redirects followed per request before it counts as failed (the ring is changing).
constexpr int kRedirectsMax = 4;
// A request id is (sequence << kSlotBits) | slot: kPipelineMax slots fit in kSlotBits.
constexpr unsigned kSlotBits = 10;
constexpr std::uint64_t kSlotMask = (std::uint64_t{1} << kSlotBits) - 1;
static_assert(kPipelineMax <= (std::size_t{1} << kSlotBits));
constexpr std::size_t kReadChunkBytes = 64 * 1024;

struct Settings {
    std::vector<std::string> seeds;
    std::size_t clients = 50;
    std::size_t pipeline = 1;
    bool pipeline_window = false;  // --pipeline-mode window (else batch)
    bool pin_clients = false;
    std::uint64_t requests = 100'000;
    std::chrono::milliseconds duration = kDurationMax;
    std::uint64_t keys = 100'000;
    std::size_t value_bytes = 100;
    std::uint32_t get_weight = 1;
    std::uint32_t put_weight = 1;
    std::optional<int> replicas;  // what the caller expects of the cluster
    std::uint64_t warmup_keys = 0;
    std::size_t threads = 1;
    std::chrono::microseconds busy_poll{0};  // see net/run_loop.hpp
    std::uint64_t seed = 1;
    bool json = false;
    std::chrono::milliseconds timeout{5000};
    std::string cluster_key;
    std::string ratio_text = "1:1";
};

enum Op : std::size_t { kGet = 0, kPut = 1, kOps = 2 };
const char* const kOpNames[kOps] = {"get", "put"};

const char* errc_name(std::error_code code) {
    if (code.category() != chordkv::error_category()) return "other";
    switch (static_cast<Errc>(code.value())) {
        case Errc::ok:
            return "ok";
        case Errc::invalid_argument:
            return "invalid_argument";
        case Errc::not_found:
            return "not_found";
        case Errc::already_exists:
            return "already_exists";
        case Errc::empty_ring:
            return "empty_ring";
        case Errc::timed_out:
            return "timed_out";
        case Errc::not_responsible:
            return "not_responsible";
        case Errc::malformed_message:
            return "malformed_message";
        case Errc::too_large:
            return "too_large";
        case Errc::storage_error:
            return "storage_error";
        case Errc::corruption:
            return "corruption";
        case Errc::busy:
            return "busy";
        case Errc::shutting_down:
            return "shutting_down";
        case Errc::unreachable:
            return "unreachable";
        case Errc::unauthenticated:
            return "unauthenticated";
        case Errc::hops_exceeded:
            return "hops_exceeded";
    }
    return "other";
}

chordkv::net::PeerPoolOptions pool_options(const Settings& s) {
    chordkv::net::PeerPoolOptions o;
    o.cluster_key = s.cluster_key;
    o.connect_timeout = s.timeout;
    o.request_timeout = s.timeout;
    o.inflight_per_peer_max = std::max<std::size_t>(kPipelineMax, 64);
    return o;
}

// Drives the walks of a RingView over a PeerPool (RingWalker); `done` runs when the walk has
// ended and the view took its result.
class AsyncWalk {
public:
    AsyncWalk(PeerPool& pool, RingView& view, std::vector<std::string> seeds)
        : walker_(pool), view_(view), seeds_(std::move(seeds)) {}

    // Starts a walk if the view asks for one. false: none was due (or one is running).
    bool start_if_due(std::function<void()> done = {}) {
        const auto now = Clock::now();
        if (!view_.walk_due(now)) return false;
        ++walks_;
        walker_.start(view_.start_walk(seeds_, now),
                      [this, done = std::move(done)](const RingWalk& walk) {
                          view_.finish_walk(walk);
                          if (done) done();
                      });
        return true;
    }
    std::uint64_t walks() const noexcept { return walks_; }

private:
    chordkv::RingWalker walker_;
    RingView& view_;
    std::vector<std::string> seeds_;
    std::uint64_t walks_ = 0;
};

// Counts of one operation type.
struct OpStats {
    Histogram latency;            // successful requests
    std::uint64_t hits = 0;       // get: found
    std::uint64_t misses = 0;     // get: not found (never written, or deleted)
    std::uint64_t redirects = 0;  // Redirect answers followed
    std::map<std::string, std::uint64_t> errors;

    std::uint64_t error_count() const {
        std::uint64_t n = 0;
        for (const auto& e : errors) n += e.second;
        return n;
    }
    void merge(const OpStats& o) {
        latency.merge(o.latency);
        hits += o.hits;
        misses += o.misses;
        redirects += o.redirects;
        for (const auto& [kind, n] : o.errors) errors[kind] += n;
    }
};

// What one phase (warm-up or measured run) sends: which operations, which keys, how many, and
// until when. Shared by the shards of the phase; take() is thread-safe.
class Phase {
public:
    Phase(std::uint32_t get_weight, std::uint32_t put_weight, bool sequential_keys,
          std::uint64_t requests, Clock::time_point deadline)
        : get_weight_(get_weight),
          put_weight_(put_weight),
          sequential_keys_(sequential_keys),
          requests_(requests),
          deadline_(deadline) {}

    // The number of the next request, or nullopt when the phase is over (count or time).
    std::optional<std::uint64_t> take(Clock::time_point now) {
        if (now >= deadline_) return std::nullopt;
        const std::uint64_t n = issued_.fetch_add(1, std::memory_order_relaxed);
        if (n >= requests_) return std::nullopt;
        return n;
    }
    bool sequential_keys() const noexcept { return sequential_keys_; }
    std::uint32_t get_weight() const noexcept { return get_weight_; }
    std::uint32_t put_weight() const noexcept { return put_weight_; }

private:
    const std::uint32_t get_weight_;
    const std::uint32_t put_weight_;
    const bool sequential_keys_;  // request n uses key n (the warm-up), else a random key
    const std::uint64_t requests_;
    const Clock::time_point deadline_;
    std::atomic<std::uint64_t> issued_{0};
};

// "key:" and the index in 12 digits, zero-padded (wider when it needs more), into `out`
// (reusing its buffer).
void key_name(std::uint64_t index, std::string& out) {
    constexpr std::size_t kDigits = 12;
    char digits[24];
    std::size_t n = 0;
    do {
        digits[n++] = static_cast<char>('0' + index % 10);
        index /= 10;
    } while (index != 0);
    while (n < kDigits) digits[n++] = '0';
    out.assign("key:");
    while (n > 0) out.push_back(digits[--n]);
}

// The ring ids of keys 0..N-1, computed once before a run and shared by the shards (read
// only), so a request does not hash its key; keys beyond the table are hashed when used.
class KeyIds {
public:
    // Bound of the table: 20 bytes per key.
    static constexpr std::uint64_t kKeysMax = std::uint64_t{1} << 21;

    explicit KeyIds(std::uint64_t keys) {
        ids_.reserve(static_cast<std::size_t>(std::min(keys, kKeysMax)));
        std::string name;
        for (std::uint64_t i = 0; i < keys && i < kKeysMax; ++i) {
            key_name(i, name);
            ids_.push_back(NodeId::hash(name));
        }
    }
    NodeId id(std::uint64_t index, const std::string& name) const {
        return index < ids_.size() ? ids_[index] : NodeId::hash(name);
    }
    // Starts loading the id of key `index` into the cache (both lines an id may span).
    void prefetch(std::uint64_t index) const {
        if (index >= ids_.size()) return;
        const char* first = reinterpret_cast<const char*>(&ids_[index]);
        __builtin_prefetch(first);
        __builtin_prefetch(first + sizeof(NodeId) - 1);
    }

private:
    std::vector<NodeId> ids_;
};

// --pin-clients: the key numbers each process owns in the ring view at the start, so client i
// can draw from those of process i mod P. Ownership that changes during the run only costs
// redirects. Built from KeyIds, so --keys must be within its table.
class PinnedKeys {
public:
    PinnedKeys() = default;
    PinnedKeys(const RingView& view, const KeyIds& ids, std::uint64_t keys) {
        std::map<std::string, std::vector<std::uint32_t>> by_process;
        for (const auto& [vnode, address] : view.vnodes()) by_process[address];
        std::string name;
        for (std::uint64_t i = 0; i < keys; ++i) {
            key_name(i, name);
            if (const std::string* owner = view.owner(ids.id(i, name))) {
                by_process[*owner].push_back(static_cast<std::uint32_t>(i));
            }
        }
        for (auto& [address, list] : by_process) lists_.push_back(std::move(list));
    }
    bool empty() const noexcept { return lists_.empty(); }
    // The keys of client `client`'s process; empty when that process owns none.
    const std::vector<std::uint32_t>& of_client(std::size_t client) const {
        return lists_[client % lists_.size()];
    }

private:
    std::vector<std::vector<std::uint32_t>> lists_;  // one per process, in address order
};

// One thread's share of the clients, on its own io_context with its own ring view.
//
// Each client has --pipeline request slots, allocated once: a slot carries one request at a
// time and is reused for the next, so the steady state allocates only the request frames.
class Shard {
public:
    Shard(const Settings& s, const RingView& view, const std::string& value, const KeyIds& ids,
          const PinnedKeys& pinned, std::size_t first, std::size_t clients)
        : settings_(s),
          ids_(ids),
          view_(view),
          walk_pool_(io_, pool_options(s)),
          walker_(walk_pool_, view_, s.seeds),
          ticker_(io_),
          tick_(std::clamp<std::chrono::milliseconds>(s.timeout / 4, std::chrono::milliseconds(1),
                                                      std::chrono::milliseconds(100))) {
        put_.value = value;
        for (std::size_t i = 0; i < clients; ++i) {
            clients_.push_back(std::make_unique<ClientSlot>(s, first + i));
            if (!pinned.empty() && !pinned.of_client(first + i).empty()) {
                clients_.back()->keys = &pinned.of_client(first + i);
            }
        }
    }

    // Runs `phase` on this shard's clients until it is over; returns when every request has
    // completed (each is bounded by --timeout). The connections stay open for the next phase:
    // the last request to complete stops the io_context, whose pending reads wait for the next
    // run.
    void run(Phase& phase) {
        phase_ = &phase;
        active_ = 0;
        for (auto& c : clients_) start_batch(*c);
        flush_dirty();
        if (active_ > 0) {
            arm_ticker();
            chordkv::net::run_busy(io_, settings_.busy_poll);
            ticker_.cancel();
        }
        io_.restart();
        phase_ = nullptr;
    }

    const OpStats& stats(Op op) const { return stats_[op]; }
    // Requests sent to each process (resends after a redirect included).
    const std::unordered_map<std::string, std::uint64_t>& sent() const { return sent_; }
    void reset_stats() {
        for (auto& s : stats_) s = OpStats();
        for (auto& [address, n] : sent_) n = 0;  // the links count through pointers into it
    }
    std::uint64_t walks() const noexcept { return walker_.walks(); }
    const RingView& view() const noexcept { return view_; }

    // Closes every connection (after the last phase).
    void close() {
        for (auto& c : clients_) {
            for (auto& link : c->links) shut(*link);
        }
        walk_pool_.close();
    }

private:
    struct ClientSlot;
    struct Link;

    // One pipeline slot's request in flight.
    struct Request {
        ClientSlot* client = nullptr;
        std::uint32_t slot = 0;  // index in client->requests
        Op op = kGet;
        std::string key;
        NodeId key_id;
        Clock::time_point started;
        int redirects = 0;
        std::string target;
        // While sent and unanswered: its request id (never 0), the link it went out on, and
        // when it times out.
        std::uint64_t id = 0;
        Link* link = nullptr;
        Clock::time_point deadline;
    };

    // A client's TCP connection to one process. Never destroyed before the shard: a failed
    // connection is closed and opened again by the next request, and the handlers of its old
    // socket see a newer `generation` and return.
    struct Link {
        Link(boost::asio::io_context& io, ClientSlot& c, std::string a, std::uint64_t& counter)
            : client(&c), address(std::move(a)), sent(&counter), socket(io), resolver(io) {}
        ClientSlot* client;
        std::string address;
        std::uint64_t* sent;  // requests sent here (Shard::sent_)
        tcp::socket socket;
        tcp::resolver resolver;
        enum class State { closed, connecting, connected } state = State::closed;
        std::uint64_t generation = 0;
        Clock::time_point connect_deadline;
        std::string out;      // frames waiting for the next write
        std::string writing;  // frames being written
        bool write_busy = false;
        bool dirty = false;  // in Shard::dirty_: written at the end of this io turn
        std::vector<char> in = std::vector<char>(kReadChunkBytes);
        // With a cluster key: the replay checks of the current connection's replies.
        std::unique_ptr<chordkv::net::ReplayGuard> guard;
        std::optional<chordkv::net::FrameReader> reader;
    };

    struct ClientSlot {
        ClientSlot(const Settings& s, std::size_t index)
            : rng(s.seed * 1'000'003 + index), requests(s.pipeline) {
            for (std::size_t i = 0; i < requests.size(); ++i) {
                requests[i].client = this;
                requests[i].slot = static_cast<std::uint32_t>(i);
            }
        }
        std::mt19937_64 rng;
        std::vector<Request> requests;  // never resized: ids name slots by index
        std::size_t in_flight = 0;      // of `requests`
        std::uint64_t sequence = 0;     // of the request ids
        // One per process this client has talked to (a handful: searched in order).
        std::vector<std::unique_ptr<Link>> links;
        // --pin-clients: the key numbers this client draws from; null: all of --keys.
        const std::vector<std::uint32_t>* keys = nullptr;
        // The key number of this client's next random request, drawn one request ahead so
        // that its id (KeyIds, 2 MB at 100,000 keys) is in the cache when it is sent: the
        // load of a random id was 7 % of chord-bench's CPU under 50 x 16 pipelined gets.
        std::optional<std::uint64_t> next_key;
    };

    std::uint64_t draw_key(ClientSlot& c) {
        if (c.keys != nullptr) {
            return (
                *c.keys)[std::uniform_int_distribution<std::size_t>(0, c.keys->size() - 1)(c.rng)];
        }
        return std::uniform_int_distribution<std::uint64_t>(0, settings_.keys - 1)(c.rng);
    }

    // Starts a request in each of `c`'s slots, until the phase is over. Counted in flight
    // before it starts: keep the count right if a request completed within issue().
    void start_batch(ClientSlot& c) {
        for (auto& r : c.requests) {
            ++c.in_flight;
            ++active_;
            if (!issue(r)) {
                --c.in_flight;
                --active_;
                return;
            }
        }
    }

    // Starts the next request of slot `r`; false when the phase is over.
    bool issue(Request& r) {
        const auto now = this->now();
        const auto n = phase_->take(now);
        if (!n) return false;
        ClientSlot& c = *r.client;
        const std::uint32_t total = phase_->get_weight() + phase_->put_weight();
        r.op =
            std::uniform_int_distribution<std::uint32_t>(0, total - 1)(c.rng) < phase_->get_weight()
                ? kGet
                : kPut;
        std::uint64_t index = *n;
        if (!phase_->sequential_keys()) {
            index = c.next_key ? *c.next_key : draw_key(c);
            c.next_key = draw_key(c);
            ids_.prefetch(*c.next_key);
        }
        key_name(index, r.key);
        r.key_id = ids_.id(index, r.key);
        r.started = now;
        r.redirects = 0;
        const std::string* owner = view_.owner(r.key_id);
        r.target = owner ? *owner : settings_.seeds[*n % settings_.seeds.size()];
        send(r, now);
        return true;
    }

    // Queues `r` on its client's link to r.target (connecting it when closed); the write goes
    // out at the end of the io turn (flush_dirty).
    // `now`: the caller's clock reading, for the deadline.
    void send(Request& r, Clock::time_point now) {
        ClientSlot& c = *r.client;
        Link& link = link_for(c, r.target);
        ++*link.sent;
        if (link.state == Link::State::closed && !connect(link)) {
            // An address that is not HOST:PORT (a node advertised it, or --nodes named it):
            // failed through the io_context, so that a window of such requests does not
            // recurse.
            view_.on_unreachable(link.address);
            walker_.start_if_due();
            boost::asio::post(io_, [this, &r] {
                fail(r, make_error_code(Errc::unreachable));
                flush_dirty();
            });
            return;
        }
        r.id = (++c.sequence << kSlotBits) | r.slot;
        r.link = &link;
        r.deadline = now + settings_.timeout;
        append_request(r, r.id, link.out);
        if (!link.dirty) {
            link.dirty = true;
            dirty_.push_back(&link);
        }
    }

    Link& link_for(ClientSlot& c, const std::string& address) {
        for (auto& link : c.links) {
            if (link->address == address) return *link;
        }
        c.links.push_back(std::make_unique<Link>(io_, c, address, sent_[address]));
        return *c.links.back();
    }

    // Appends the request frame of `r` under request id `rid` to `out` (a link's queue). The
    // messages are members, reused, and the frame is encoded in place: nothing is allocated
    // once the queue has grown.
    void append_request(const Request& r, std::uint64_t rid, std::string& out) {
        const std::string* key = cluster_key();
        if (r.op == kGet) {
            get_.request_id = rid;
            get_.key.assign(r.key);
            chordkv::net::append_admin(out, get_, key);
            return;
        }
        put_.request_id = rid;
        put_.key.assign(r.key);
        put_.deadline_ms = chordkv::net::deadline_after(settings_.timeout);
        chordkv::net::append_admin(out, put_, key);
    }

    const std::string* cluster_key() const noexcept {
        return settings_.cluster_key.empty() ? nullptr : &settings_.cluster_key;
    }

    // Writes what every link queued in this io turn: one write per link.
    void flush_dirty() {
        for (std::size_t i = 0; i < dirty_.size(); ++i) {  // write() may fail a link, which
            Link& link = *dirty_[i];                       // may queue more: index, not iterator
            link.dirty = false;
            write(link);
        }
        dirty_.clear();
    }

    void write(Link& link) {
        if (link.state != Link::State::connected || link.write_busy || link.out.empty()) return;
        link.write_busy = true;
        link.writing.swap(link.out);
        link.out.clear();
        boost::asio::async_write(
            link.socket, boost::asio::buffer(link.writing),
            [this, &link, generation = link.generation](const boost::system::error_code& ec,
                                                        std::size_t) {
                if (link.generation != generation) return;
                link.write_busy = false;
                link.writing.clear();
                if (ec) {
                    link_failed(
                        link, Error(Errc::unreachable, link.address + ": write: " + ec.message()));
                } else {
                    write(link);
                }
                flush_dirty();
            });
    }

    // Opens `link`; false (and the link stays closed) when its address is not HOST:PORT.
    bool connect(Link& link) {
        ++link.generation;
        link.state = Link::State::connecting;
        link.connect_deadline = Clock::now() + settings_.timeout;
        const std::string* key = cluster_key();
        if (key) {
            link.guard = std::make_unique<chordkv::net::ReplayGuard>();
            link.reader.emplace(chordkv::net::kTcpFrameLimits, key,
                                chordkv::net::StreamRole::acceptor, *link.guard);
            // Our stream-open frame goes ahead of every request.
            link.out.insert(
                0, chordkv::net::encode_stream_open(chordkv::net::StreamRole::connector, *key));
        } else {
            link.reader.emplace(chordkv::net::kTcpFrameLimits, nullptr);
        }
        auto target = chordkv::net::parse_host_port(link.address);
        if (!target) {
            shut(link);
            return false;
        }
        auto connected = [this, &link,
                          generation = link.generation](const boost::system::error_code& ec) {
            if (link.generation != generation) return;
            on_connect(link, ec);
            flush_dirty();
        };
        boost::system::error_code bad_ip;
        const auto ip = boost::asio::ip::make_address(target->host, bad_ip);
        if (!bad_ip) {
            link.socket.async_connect(tcp::endpoint(ip, target->port), connected);
            return true;
        }
        link.resolver.async_resolve(
            target->host, std::to_string(target->port),
            [this, &link, connected, generation = link.generation](
                const boost::system::error_code& ec, const tcp::resolver::results_type& found) {
                if (link.generation != generation) return;
                if (ec) {
                    link_failed(link, Error(Errc::unreachable,
                                            link.address + ": cannot resolve: " + ec.message()));
                    return flush_dirty();
                }
                boost::asio::async_connect(link.socket, found,
                                           [connected](const boost::system::error_code& e,
                                                       const tcp::endpoint&) { connected(e); });
            });
        return true;
    }

    void on_connect(Link& link, const boost::system::error_code& ec) {
        if (ec) {
            return link_failed(
                link, Error(Errc::unreachable, link.address + ": connect: " + ec.message()));
        }
        if (chordkv::net::connected_to_itself(link.socket)) {
            return link_failed(
                link, Error(Errc::unreachable, link.address + ": connect: nothing listens there"));
        }
        link.state = Link::State::connected;
        boost::system::error_code ignored;
        link.socket.set_option(tcp::no_delay(true), ignored);
        read(link);
        write(link);
    }

    void read(Link& link) {
        link.socket.async_read_some(
            boost::asio::buffer(link.in), [this, &link, generation = link.generation](
                                              const boost::system::error_code& ec, std::size_t n) {
                if (link.generation != generation) return;
                if (ec) {
                    link_failed(link,
                                Error(Errc::unreachable,
                                      link.address + (ec == boost::asio::error::eof
                                                          ? ": connection closed by the peer"
                                                          : ": connection lost: " + ec.message())));
                    return flush_dirty();
                }
                link.reader->append(std::string_view(link.in.data(), n));
                const ReadTime read_time(*this);
                for (;;) {
                    auto next = link.reader->next();
                    if (!next) {
                        const Error& e = next.error();
                        link_failed(link, Error(e.code(),
                                                link.address + ": bad reply frame: " + e.detail()));
                        return flush_dirty();
                    }
                    if (!next->has_value()) break;
                    on_frame(link, **next);
                    if (link.generation != generation) return flush_dirty();
                }
                flush_dirty();
                read(link);
            });
    }

    // The clock as a read's replies see it: one reading when the read completed, for their
    // latencies and for the requests they start, instead of two clock_gettime calls per
    // request (5 % of the load generator's CPU under 50 x 16 pipelined gets). Outside a read
    // (the first batch, the ticker, posted failures) the clock itself.
    Clock::time_point now() const { return read_time_ ? *read_time_ : Clock::now(); }
    class ReadTime {
    public:
        explicit ReadTime(Shard& shard) : shard_(shard) { shard_.read_time_ = Clock::now(); }
        ~ReadTime() { shard_.read_time_.reset(); }
        ReadTime(const ReadTime&) = delete;
        ReadTime& operator=(const ReadTime&) = delete;

    private:
        Shard& shard_;
    };

    // A reply on `link`: completes the request of the slot its id names, if that slot still
    // waits for it there (a reply after its request timed out is dropped).
    void on_frame(Link& link, const FrameView& frame) {
        if (frame.payload.size() < chordkv::net::kRequestIdBytes) {
            return link_failed(link, Error(Errc::malformed_message,
                                           link.address + ": a reply without a request id"));
        }
        const std::uint64_t id = chordkv::net::request_id_of(frame.payload);
        ClientSlot& c = *link.client;
        const std::uint64_t slot = id & kSlotMask;
        if (slot >= c.requests.size()) return;
        Request& r = c.requests[slot];
        if (r.id != id || r.link != &link) return;
        r.id = 0;
        r.link = nullptr;
        on_reply(r, frame.type, frame.payload);
    }

    void on_reply(Request& r, std::uint8_t type, std::string_view payload) {
        OpStats& stats = stats_[r.op];
        if (type == chordkv::net::admin_type<chordkv::net::Redirect>()) {
            auto redirect = chordkv::net::decode_admin<chordkv::net::Redirect>(payload);
            if (!redirect || redirect->owner_address.empty()) {
                return fail(r, make_error_code(Errc::malformed_message));
            }
            view_.on_redirect(r.target, r.key_id, redirect->owner_id, redirect->owner_address);
            walker_.start_if_due();
            if (++r.redirects > kRedirectsMax) {
                return fail(r, make_error_code(Errc::hops_exceeded));
            }
            ++stats.redirects;
            r.target = redirect->owner_address;
            return send(r, now());
        }
        if (r.op == kGet) {
            auto reply = decode_reply<chordkv::net::GetReply>(type, payload, r.target);
            if (!reply) return fail(r, reply.code());
            ++(reply->found ? stats.hits : stats.misses);
        } else {
            auto reply = decode_reply<chordkv::net::PutReply>(type, payload, r.target);
            if (!reply) return fail(r, reply.code());
        }
        stats.latency.record(now() - r.started);
        next(r);
    }

    // `link` failed: closes it and fails the requests waiting on it. A process that cannot be
    // reached leaves the view (a stale view is walked again).
    void link_failed(Link& link, const Error& error) {
        shut(link);
        if (error.code() == Errc::unreachable || error.code() == Errc::timed_out) {
            view_.on_unreachable(link.address);
            walker_.start_if_due();
        }
        std::vector<Request*> waiting;
        for (auto& r : link.client->requests) {
            if (r.link == &link) {
                r.id = 0;
                r.link = nullptr;
                waiting.push_back(&r);
            }
        }
        // Failing a request may start others (on this link too): they were taken out first.
        for (Request* r : waiting) fail(*r, error.code());
    }

    void shut(Link& link) {
        ++link.generation;
        link.state = Link::State::closed;
        boost::system::error_code ignored;
        link.resolver.cancel();
        link.socket.close(ignored);
        link.out.clear();
        link.writing.clear();
        link.write_busy = false;
        link.reader.reset();
    }

    // Every tick_: fails the requests past their deadline, and closes links whose connect
    // takes longer than --timeout.
    void arm_ticker() {
        ticker_.expires_after(tick_);
        ticker_.async_wait([this](const boost::system::error_code& ec) {
            if (ec || phase_ == nullptr) return;
            const auto now = Clock::now();
            for (auto& c : clients_) {
                // By index: failing a link's requests may start others, which may open a
                // link to another process (links never move: they are held by pointer).
                for (std::size_t i = 0; i < c->links.size(); ++i) {
                    Link& link = *c->links[i];
                    if (link.state == Link::State::connecting && now >= link.connect_deadline) {
                        link_failed(link,
                                    Error(Errc::timed_out, link.address + ": connect timed out"));
                    }
                }
                std::vector<Request*> late;
                for (auto& r : c->requests) {
                    if (r.link != nullptr && now >= r.deadline) {
                        r.id = 0;
                        r.link = nullptr;
                        late.push_back(&r);
                    }
                }
                for (Request* r : late) {
                    view_.on_unreachable(r->target);
                    walker_.start_if_due();
                    fail(*r, make_error_code(Errc::timed_out));
                }
            }
            flush_dirty();
            arm_ticker();
        });
    }

    void fail(Request& r, std::error_code code) {
        ++stats_[r.op].errors[errc_name(code)];
        next(r);
    }

    // A request completed: its slot starts another (window), or the client starts its next
    // batch once this was its last in flight (batch); when the last slot retires, the phase
    // is over on this shard.
    void next(Request& r) {
        ClientSlot& c = *r.client;
        if (!settings_.pipeline_window || !issue(r)) {
            --c.in_flight;
            --active_;
            if (!settings_.pipeline_window && c.in_flight == 0) start_batch(c);
        }
        if (active_ == 0) io_.stop();
    }

    const Settings& settings_;
    const KeyIds& ids_;
    boost::asio::io_context io_{1};  // one thread runs it: no locking inside Asio's scheduler
    RingView view_;
    PeerPool walk_pool_;
    AsyncWalk walker_;
    boost::asio::steady_timer ticker_;
    const std::chrono::milliseconds tick_;
    std::vector<std::unique_ptr<ClientSlot>> clients_;
    std::vector<Link*> dirty_;  // links with frames queued in this io turn
    chordkv::net::GetRequest get_;
    chordkv::net::PutRequest put_;
    Phase* phase_ = nullptr;
    std::optional<Clock::time_point> read_time_;  // set while a read's replies are handled
    std::size_t active_ = 0;                      // pipeline slots with a request in flight
    OpStats stats_[kOps];
    std::unordered_map<std::string, std::uint64_t> sent_;
};

struct RingInfo {
    std::size_t processes = 0;
    std::size_t vnodes = 0;
    std::optional<int> replicas;  // 1 + the holders the owner of the first vnode names
    std::uint64_t walk_ms = 0;
};

// Walks the ring from the seeds and asks one vnode's process for its replica set (the
// cluster's R, bounded by its process count).
RingView discover(const Settings& s, RingInfo& info) {
    boost::asio::io_context io;
    RingView view;
    PeerPool pool(io, pool_options(s));
    AsyncWalk walker(pool, view, s.seeds);
    const auto started = Clock::now();
    walker.start_if_due([&] {
        info.walk_ms = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
        if (view.empty()) return pool.close();
        const auto& [vnode, address] = *view.vnodes().begin();
        const std::string* key = pool.key();
        pool.call(
            address,
            [vnode = vnode, key](std::uint64_t rid) {
                return chordkv::net::encode_admin(chordkv::net::ReplicaSetRequest{rid, vnode}, key);
            },
            [&, address = address](Result<Frame> frame) {
                auto reply = frame ? decode_reply<chordkv::net::ReplicaSetReply>(*frame, address)
                                   : Result<chordkv::net::ReplicaSetReply>(frame.error());
                if (reply && reply->owner)
                    info.replicas = 1 + static_cast<int>(reply->holders.size());
                pool.close();
            });
    });
    io.run();
    info.processes = view.processes();
    info.vnodes = view.size();
    return view;
}

struct PhaseResult {
    OpStats ops[kOps];
    double seconds = 0;
    std::uint64_t walks = 0;
    std::map<std::string, std::uint64_t> sent;  // requests sent per process
};

// Runs `phase` on every shard, shard 0 on this thread.
PhaseResult run_phase(std::vector<std::unique_ptr<Shard>>& shards, Phase& phase) {
    for (auto& shard : shards) shard->reset_stats();
    const auto started = Clock::now();
    {
        std::vector<std::jthread> threads;
        for (std::size_t i = 1; i < shards.size(); ++i) {
            threads.emplace_back([&shard = *shards[i], &phase] { shard.run(phase); });
        }
        shards.front()->run(phase);
    }
    PhaseResult out;
    out.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    for (auto& shard : shards) {
        for (std::size_t op = 0; op < kOps; ++op) out.ops[op].merge(shard->stats(Op(op)));
        out.walks += shard->walks();
        for (const auto& [address, n] : shard->sent()) {
            if (n > 0) out.sent[address] += n;
        }
    }
    return out;
}

double ms(Histogram::Duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

double per_second(std::uint64_t n, double seconds) {
    return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

std::string errors_text(const OpStats& s) {
    if (s.errors.empty()) return "0";
    std::string out;
    for (const auto& [kind, n] : s.errors) {
        out += (out.empty() ? "" : ",") + kind + "=" + std::to_string(n);
    }
    return out;
}

std::string json_op(const OpStats& s, double seconds) {
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o.precision(3);
    const auto& h = s.latency;
    o << "{\"count\":" << h.count() << ",\"ops_per_sec\":" << per_second(h.count(), seconds)
      << ",\"p50_ms\":" << ms(h.percentile(50)) << ",\"p99_ms\":" << ms(h.percentile(99))
      << ",\"p999_ms\":" << ms(h.percentile(99.9)) << ",\"max_ms\":" << ms(h.max())
      << ",\"mean_ms\":" << ms(h.mean()) << ",\"hits\":" << s.hits << ",\"misses\":" << s.misses
      << ",\"redirects\":" << s.redirects << ",\"error_count\":" << s.error_count()
      << ",\"errors\":{";
    bool first = true;
    for (const auto& [kind, n] : s.errors) {
        o << (first ? "" : ",") << "\"" << kind << "\":" << n;
        first = false;
    }
    o << "}}";
    return o.str();
}

void print_text(const Settings& s, const RingInfo& ring, const std::optional<PhaseResult>& warmup,
                const PhaseResult& run) {
    std::printf("ring: %zu processes, %zu vnodes, replicas %s (walk %llu ms)\n", ring.processes,
                ring.vnodes, ring.replicas ? std::to_string(*ring.replicas).c_str() : "?",
                static_cast<unsigned long long>(ring.walk_ms));
    if (s.replicas && ring.replicas && *s.replicas != *ring.replicas) {
        std::printf("warning: --replicas %d, but the cluster keeps %d copies\n", *s.replicas,
                    *ring.replicas);
    }
    std::printf(
        "load: %zu clients%s, pipeline %zu (%s), %zu thread(s), keys %llu, value %zu B, get:put "
        "%s\n",
        s.clients, s.pin_clients ? " (pinned to processes)" : "", s.pipeline,
        s.pipeline_window ? "window" : "batch", s.threads, static_cast<unsigned long long>(s.keys),
        s.value_bytes, s.ratio_text.c_str());
    if (warmup) {
        const auto& w = warmup->ops[kPut];
        std::printf("warm-up: %llu puts in %.2f s (%.0f ops/s), errors %s\n",
                    static_cast<unsigned long long>(w.latency.count()), warmup->seconds,
                    per_second(w.latency.count(), warmup->seconds), errors_text(w).c_str());
    }
    std::printf("%-4s %10s %11s %9s %9s %9s %9s  %s\n", "op", "count", "ops/s", "p50 ms", "p99 ms",
                "p99.9 ms", "max ms", "errors");
    std::uint64_t total = 0;
    std::uint64_t redirects = 0;
    for (std::size_t op = 0; op < kOps; ++op) {
        const auto& st = run.ops[op];
        const auto& h = st.latency;
        total += h.count();
        redirects += st.redirects;
        if (h.count() == 0 && st.errors.empty()) continue;
        std::printf("%-4s %10llu %11.0f %9.3f %9.3f %9.3f %9.3f  %s\n", kOpNames[op],
                    static_cast<unsigned long long>(h.count()), per_second(h.count(), run.seconds),
                    ms(h.percentile(50)), ms(h.percentile(99)), ms(h.percentile(99.9)), ms(h.max()),
                    errors_text(st).c_str());
    }
    const auto& g = run.ops[kGet];
    std::printf("total %llu requests in %.2f s: %.0f ops/s; redirects %llu; ring re-walks %llu",
                static_cast<unsigned long long>(total), run.seconds, per_second(total, run.seconds),
                static_cast<unsigned long long>(redirects),
                static_cast<unsigned long long>(run.walks));
    if (g.hits + g.misses > 0) {
        std::printf("; get hits %.1f%%",
                    100.0 * static_cast<double>(g.hits) / static_cast<double>(g.hits + g.misses));
    }
    std::printf("\nsent by process:");
    for (const auto& [address, n] : run.sent) {
        std::printf(" %s %llu", address.c_str(), static_cast<unsigned long long>(n));
    }
    std::printf("\n");
}

void print_json(const Settings& s, const RingInfo& ring, const std::optional<PhaseResult>& warmup,
                const PhaseResult& run) {
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o.precision(3);
    o << "{\"settings\":{\"clients\":" << s.clients << ",\"pipeline\":" << s.pipeline
      << ",\"pipeline_mode\":\"" << (s.pipeline_window ? "window" : "batch") << "\""
      << ",\"pin_clients\":" << (s.pin_clients ? "true" : "false") << ",\"threads\":" << s.threads
      << ",\"requests\":" << s.requests
      << ",\"duration_s\":" << std::chrono::duration<double>(s.duration).count()
      << ",\"keys\":" << s.keys << ",\"value_bytes\":" << s.value_bytes << ",\"ratio\":\""
      << s.ratio_text << "\",\"seed\":" << s.seed << ",\"warmup_keys\":" << s.warmup_keys
      << ",\"replicas\":" << (s.replicas ? std::to_string(*s.replicas) : "null") << "}";
    o << ",\"ring\":{\"processes\":" << ring.processes << ",\"vnodes\":" << ring.vnodes
      << ",\"replicas\":" << (ring.replicas ? std::to_string(*ring.replicas) : "null")
      << ",\"walk_ms\":" << ring.walk_ms << "}";
    if (warmup) {
        o << ",\"warmup\":{\"seconds\":" << warmup->seconds
          << ",\"put\":" << json_op(warmup->ops[kPut], warmup->seconds) << "}";
    }
    std::uint64_t total = 0;
    for (const auto& op : run.ops) total += op.latency.count();
    o << ",\"seconds\":" << run.seconds << ",\"total\":{\"count\":" << total
      << ",\"ops_per_sec\":" << per_second(total, run.seconds) << "},\"ring_walks\":" << run.walks;
    o << ",\"sent_by_process\":{";
    for (auto it = run.sent.begin(); it != run.sent.end(); ++it) {
        o << (it == run.sent.begin() ? "" : ",") << "\"" << it->first << "\":" << it->second;
    }
    o << "}";
    for (std::size_t op = 0; op < kOps; ++op) {
        o << ",\"" << kOpNames[op] << "\":" << json_op(run.ops[op], run.seconds);
    }
    o << "}";
    std::cout << o.str() << "\n";
}

int fail(const std::string& message) {
    std::cerr << "chord-bench: " << message << "\n";
    return kExitError;
}

std::vector<std::string> split_commas(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

bool parse_ratio(const std::string& text, std::uint32_t& get, std::uint32_t& put) {
    const auto colon = text.find(':');
    if (colon == std::string::npos) return false;
    try {
        std::size_t used = 0;
        const unsigned long g = std::stoul(text.substr(0, colon), &used);
        if (used != colon) return false;
        const std::string rest = text.substr(colon + 1);
        const unsigned long p = std::stoul(rest, &used);
        if (used != rest.size() || g > 1'000'000 || p > 1'000'000 || g + p == 0) return false;
        get = static_cast<std::uint32_t>(g);
        put = static_cast<std::uint32_t>(p);
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    std::string nodes = "127.0.0.1:7400";
    double duration_s = 0;
    std::int64_t timeout_ms = s.timeout.count();
    std::uint32_t busy_poll_us = 0;
    std::string key_file;
    std::string pipeline_mode = "batch";
    int replicas = 0;
    po::options_description flags(
        "chord-bench [options]: load a chordkv cluster with gets and puts sent straight to each\n"
        "key's owner, and report throughput and latency per operation.\n"
        "\n"
        "Options");
    flags.add_options()("help,h", "show this help")  //
        ("nodes", po::value(&nodes)->default_value(nodes),
         "HOST:PORT[,HOST:PORT...] cluster nodes to walk the ring from")  //
        ("clients", po::value(&s.clients)->default_value(s.clients),
         "clients, each with its own connections (1..1000)")  //
        ("pipeline", po::value(&s.pipeline)->default_value(s.pipeline),
         "requests in flight per client (1..1024)")  //
        ("pipeline-mode", po::value(&pipeline_mode)->default_value(pipeline_mode),
         "batch: a client sends --pipeline requests, then waits for all their replies before "
         "the next batch (as redis-benchmark -P); window: each reply starts the next request "
         "at once")  //
        ("pin-clients", po::bool_switch(&s.pin_clients),
         "client i draws its keys from those process i mod P owns (as redis-benchmark "
         "--cluster does), so its pipeline goes to one process; needs --keys <= 2097152")  //
        ("requests", po::value(&s.requests)->default_value(s.requests),
         "requests to send (with --duration alone: up to 1e9)")  //
        ("duration", po::value(&duration_s),
         "seconds to run (at most 600); stops at --requests or this, whichever comes first")  //
        ("keys", po::value(&s.keys)->default_value(s.keys), "key space: key:0 .. key:K-1")    //
        ("value-bytes", po::value(&s.value_bytes)->default_value(s.value_bytes),
         "bytes of each put's value (0..1048576)")  //
        ("ratio", po::value(&s.ratio_text)->default_value(s.ratio_text),
         "get:put weights, e.g. 1:0 for gets only")  //
        ("warmup-keys", po::value(&s.warmup_keys)->implicit_value(kKeysMax + 1),
         "put keys 0..N-1 first, not measured, so that gets find them (no N: every key)")  //
        ("replicas", po::value(&replicas),
         "the copies you expect the cluster to keep (chordd --replicas): reported and checked "
         "against the cluster")  //
        ("threads", po::value(&s.threads)->default_value(s.threads),
         "threads, each with its own io_context and 1/T of the clients (1..8)")  //
        ("busy-poll-us", po::value(&busy_poll_us)->default_value(busy_poll_us),
         "microseconds each thread polls before it sleeps (0: never polls; see chordd "
         "--busy-poll-us)")  //
        ("seed", po::value(&s.seed)->default_value(s.seed),
         "random seed of keys and operations")  //
        ("timeout", po::value(&timeout_ms)->default_value(timeout_ms),
         "milliseconds each request may take")                                            //
        ("cluster-key-file", po::value(&key_file), "the cluster's key, when it has one")  //
        ("json", po::bool_switch(&s.json), "print the results as one JSON object");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, flags), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        return fail(e.what());
    }
    if (vm.count("help")) {
        std::cout << flags;
        return kExitOk;
    }
    s.seeds = split_commas(nodes);
    if (s.seeds.empty()) return fail("--nodes names no node");
    if (s.clients < 1 || s.clients > kClientsMax) return fail("--clients must be within 1..1000");
    if (s.pipeline < 1 || s.pipeline > kPipelineMax) {
        return fail("--pipeline must be within 1..1024");
    }
    if (pipeline_mode != "batch" && pipeline_mode != "window") {
        return fail("--pipeline-mode must be batch or window");
    }
    s.pipeline_window = pipeline_mode == "window";
    if (s.threads < 1 || s.threads > kThreadsMax) return fail("--threads must be within 1..8");
    if (s.threads > s.clients) s.threads = s.clients;
    if (s.keys < 1 || s.keys > kKeysMax) return fail("--keys must be within 1..100000000");
    if (s.value_bytes > kValueBytesMax) return fail("--value-bytes must be at most 1048576");
    if (!parse_ratio(s.ratio_text, s.get_weight, s.put_weight)) {
        return fail("--ratio must be G:P with non-negative integers, not both 0");
    }
    if (timeout_ms <= 0) return fail("--timeout must be positive");
    s.timeout = std::chrono::milliseconds(timeout_ms);
    if (busy_poll_us > kBusyPollUsMax) {
        return fail("--busy-poll-us must be at most " + std::to_string(kBusyPollUsMax));
    }
    s.busy_poll = std::chrono::microseconds(busy_poll_us);
    if (vm.count("duration")) {
        if (!(duration_s > 0) || duration_s > static_cast<double>(kDurationMax.count())) {
            return fail("--duration must be within (0, 600] seconds");
        }
        s.duration = std::chrono::milliseconds(static_cast<std::int64_t>(duration_s * 1000));
        if (vm["requests"].defaulted()) s.requests = kRequestsMax;
    }
    if (s.requests < 1 || s.requests > kRequestsMax) {
        return fail("--requests must be within 1..1000000000");
    }
    if (vm.count("replicas")) {
        if (replicas < 1) return fail("--replicas must be at least 1");
        s.replicas = replicas;
    }
    if (s.warmup_keys > s.keys) s.warmup_keys = s.keys;
    if (s.pin_clients && s.keys > KeyIds::kKeysMax) {
        return fail("--pin-clients needs --keys <= " + std::to_string(KeyIds::kKeysMax));
    }
    if (!key_file.empty()) {
        auto key = chordkv::net::read_cluster_key_file(key_file);
        if (!key) return fail(key.error().message());
        s.cluster_key = std::move(key).value();
    }

    RingInfo ring;
    const RingView view = discover(s, ring);
    if (view.empty()) return fail("no node of --nodes answered the ring walk");

    // One value for every put: random printable bytes.
    std::string value(s.value_bytes, 'x');
    {
        std::mt19937_64 rng(s.seed);
        for (auto& c : value) c = static_cast<char>('a' + rng() % 26);
    }
    const KeyIds ids(s.keys);
    const PinnedKeys pinned = s.pin_clients ? PinnedKeys(view, ids, s.keys) : PinnedKeys();
    std::vector<std::unique_ptr<Shard>> shards;
    for (std::size_t t = 0; t < s.threads; ++t) {
        const std::size_t first = s.clients * t / s.threads;
        const std::size_t last = s.clients * (t + 1) / s.threads;
        shards.push_back(std::make_unique<Shard>(s, view, value, ids, pinned, first, last - first));
    }

    std::optional<PhaseResult> warmup;
    if (s.warmup_keys > 0) {
        Phase phase(0, 1, /*sequential_keys=*/true, s.warmup_keys, Clock::now() + kDurationMax);
        warmup = run_phase(shards, phase);
    }
    Phase phase(s.get_weight, s.put_weight, false, s.requests, Clock::now() + s.duration);
    const PhaseResult run = run_phase(shards, phase);
    for (auto& shard : shards) shard->close();

    if (s.json) {
        print_json(s, ring, warmup, run);
    } else {
        print_text(s, ring, warmup, run);
    }
    std::uint64_t errors = 0;
    for (const auto& op : run.ops) errors += op.error_count();
    if (warmup) errors += warmup->ops[kPut].error_count();
    return errors == 0 ? kExitOk : kExitFailures;
}
