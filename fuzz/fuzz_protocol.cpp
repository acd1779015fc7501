// fuzz_protocol: one chord::Protocol vnode driven by what peers can send it (every handler
// reachable from the network: requests, replies to its own RPCs, unsolicited hints, leaves)
// interleaved with the passage of time, lookups and a leave. Input format: protocol_input.hpp.
//
// Deterministic: each input gets a fresh vnode, set up the same way (the ring's membership is
// built once), a generator with a fixed seed and a clock that starts at a fixed point and moves
// only when the input says so. State is not carried from one input to the next, so a crash
// reproduces from its input alone.
//
// Properties checked after every operation, beyond "no crash, no sanitizer report, no leak":
//   - check_invariants() holds (successor list ordered, no duplicates, predecessor not self);
//   - after tick(now), next_deadline() is later than now (no busy loop for the owner);
//   - every envelope the vnode sends comes from itself and encodes into a UDP frame that
//     decodes (whatever peers told it, it never sends what its peers would drop);
//   - lookup, join and leave callbacks run at most once; a lookup that succeeds names its owner
//     first among the replicas and fails only with the documented errors.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "chord/messages.hpp"
#include "chord/node_id.hpp"
#include "chord/protocol.hpp"
#include "chord/result.hpp"
#include "fuzz/fuzz_support.hpp"
#include "fuzz/protocol_input.hpp"
#include "net/address.hpp"
#include "net/codec.hpp"

namespace chordkv::fuzz {
namespace {

using chord::Envelope;
using chord::Time;

constexpr std::uint64_t kSeed = 0x6368'6f72'646b'76;  // "chordkv"
const Time kStart = Time{} + std::chrono::hours(1);
// Requests remembered for the reply op; older ones are forgotten (still answerable by deliver).
constexpr std::size_t kRequestsRemembered = 256;

// Production defaults, but for small bounds on RPCs in flight, lookups and hops, so that inputs
// of a few hundred bytes reach the paths where they run out.
chord::ProtocolOptions protocol_options() {
    chord::ProtocolOptions options;
    options.inflight_rpcs_max = 16;
    options.lookups_max = 4;
    options.lookup_hops_max = 6;
    return options;
}

// The request type a reply body answers, as an index into chord::Message; nullopt for bodies
// that answer nothing.
std::optional<std::size_t> answered_type(const chord::Message& body) {
    const auto index_of = [](const chord::Message& request) { return request.index(); };
    if (std::holds_alternative<chord::Pong>(body)) return index_of(chord::Ping{});
    if (std::holds_alternative<chord::Neighbors>(body)) return index_of(chord::GetNeighbors{});
    if (std::holds_alternative<chord::FindNextReply>(body)) return index_of(chord::FindNext{});
    if (std::holds_alternative<chord::LeaveAck>(body)) return index_of(chord::Leave{});
    return std::nullopt;
}

// A callback that must run at most once.
class Once {
public:
    void operator()() {
        require(!*ran_, "a completion callback ran twice");
        *ran_ = true;
    }

private:
    std::shared_ptr<bool> ran_ = std::make_shared<bool>(false);
};

class Harness {
public:
    explicit Harness(Setup setup)
        : protocol_(ring_members()[kSelfIndex], protocol_options(), rng_) {
        switch (setup) {
            case Setup::ring:
                protocol_.create(now_, ring_members());
                break;
            case Setup::alone:
                protocol_.create(now_);
                break;
            case Setup::join: {
                Once once;
                protocol_.join(now_, kBootstrapAddress, [once](Time, Status) mutable { once(); });
                break;
            }
        }
        collect();
    }

    void run(ByteReader& in) {
        while (!in.empty()) step(in);
    }

private:
    void step(ByteReader& in) {
        const Op op = static_cast<Op>(in.u8() % kOpCount);
        switch (op) {
            case Op::deliver:
                if (auto e = decode(in.bytes(in.u16()))) handle(*e);
                break;
            case Op::reply: {
                const std::uint8_t pick = in.u8();
                if (auto e = decode(in.bytes(in.u16()))) reply(pick, std::move(*e));
                break;
            }
            case Op::advance:
                now_ += std::chrono::milliseconds(in.u16());
                tick();
                break;
            case Op::run_timers:
                if (const Time at = protocol_.next_deadline(); at != Time::max() && at > now_) {
                    now_ = at;
                }
                tick();
                break;
            case Op::lookup: {
                chord::NodeId::Bytes target{};
                const std::string_view raw = in.bytes(target.size());
                for (std::size_t i = 0; i < raw.size(); ++i) {
                    target[i] = static_cast<std::uint8_t>(raw[i]);
                }
                Once once;
                protocol_.lookup(now_, chord::NodeId(target),
                                 [once](Time, Result<chord::LookupResult> r) mutable {
                                     once();
                                     check_lookup(r);
                                 });
                break;
            }
            case Op::leave: {
                Once once;
                protocol_.leave(now_, [once](Time, Status) mutable { once(); });
                break;
            }
        }
        collect();
        if (trace_) print_state(op);
        const std::string broken = protocol_.check_invariants();
        if (!broken.empty()) std::fprintf(stderr, "invariants: %s\n", broken.c_str());
        require(broken.empty(), "Protocol::check_invariants() failed");
    }

    static std::optional<Envelope> decode(std::string_view datagram) {
        auto e = net::decode_envelope(datagram, net::kUdpFrameLimits, nullptr);
        if (!e) return std::nullopt;
        return std::move(e).value();
    }

    static void check_lookup(const Result<chord::LookupResult>& r) {
        if (r) {
            require(!r->replicas.empty() && r->replicas.front() == r->owner,
                    "a lookup result does not name its owner first among the replicas");
            return;
        }
        require(r.code() == Errc::busy || r.code() == Errc::shutting_down ||
                    r.code() == Errc::unreachable || r.code() == Errc::hops_exceeded,
                "a lookup failed with an undocumented error");
    }

    void reply(std::uint8_t pick, Envelope e) {
        std::optional<std::size_t> wanted;
        if ((pick & kPickAny) == 0) {
            wanted = answered_type(e.body);
            if (!wanted) return;
        }
        std::size_t skip = pick & static_cast<std::uint8_t>(~kPickAny);
        for (auto it = requests_.rbegin(); it != requests_.rend(); ++it) {
            if (wanted && it->body.index() != *wanted) continue;
            if (skip-- > 0) continue;
            e.from.address = it->to_address;
            if (it->to_id) e.from.id = *it->to_id;
            e.to_address = protocol_.self().address;
            e.to_id = protocol_.self().id;
            e.rpc_id = it->rpc_id;
            e.reply = true;
            requests_.erase(std::next(it).base());
            handle(e);
            return;
        }
    }

    void handle(const Envelope& e) {
        if (trace_) print_envelope("  got", e);
        protocol_.handle(now_, e);
    }

    void tick() {
        protocol_.tick(now_);
        require(protocol_.next_deadline() > now_, "after tick(now), next_deadline() <= now");
    }

    // Takes the vnode's outbox: checks each envelope as the UDP transport would send it and
    // remembers the requests.
    void collect() {
        for (Envelope& e : protocol_.take_outbox()) {
            require(e.from == protocol_.self(), "the vnode sent an envelope not from itself");
            const std::string datagram = net::encode_envelope(e, nullptr);
            require(net::decode_envelope(datagram, net::kUdpFrameLimits, nullptr).ok(),
                    "the vnode sent an envelope that its peers cannot decode");
            (void)net::parse_host_port(e.to_address);
            if (trace_) print_envelope("  sent", e);
            if (e.reply || e.rpc_id == 0) continue;
            // A resend keeps its rpc id: keep one entry per id, at the most recent place.
            for (auto it = requests_.begin(); it != requests_.end(); ++it) {
                if (it->rpc_id == e.rpc_id) {
                    requests_.erase(it);
                    break;
                }
            }
            if (requests_.size() >= kRequestsRemembered) requests_.erase(requests_.begin());
            requests_.push_back(std::move(e));
        }
    }

    // CHORDKV_FUZZ_TRACE=1: what each operation did, to read a reproducer by.
    void print_state(Op op) const {
        static const char* const names[] = {"deliver",    "reply",  "advance",
                                            "run_timers", "lookup", "leave"};
        const chord::RingState& ring = protocol_.ring_state();
        const chord::ProtocolStats& stats = protocol_.stats();
        std::fprintf(
            stderr,
            "%-10s t=+%lldms %s pred=%s successors=%zu requests=%zu received=%llu "
            "ignored=%llu sent=%llu\n",
            names[static_cast<int>(op)],
            static_cast<long long>(
                std::chrono::duration_cast<std::chrono::milliseconds>(now_ - kStart).count()),
            chord::member_state_name(ring.state),
            ring.predecessor ? ring.predecessor->address.c_str() : "-", ring.successors.size(),
            requests_.size(), static_cast<unsigned long long>(stats.messages_received),
            static_cast<unsigned long long>(stats.messages_ignored),
            static_cast<unsigned long long>(stats.rpcs_sent));
    }

    static void print_envelope(const char* what, const Envelope& e) {
        std::fprintf(stderr, "%s %s%s rpc=%llu from=%s to=%s\n", what, chord::message_name(e.body),
                     e.reply ? " (reply)" : "", static_cast<unsigned long long>(e.rpc_id),
                     e.from.address.c_str(), e.to_address.c_str());
    }

    const bool trace_ = std::getenv("CHORDKV_FUZZ_TRACE") != nullptr;
    std::mt19937_64 rng_{kSeed};
    Time now_ = kStart;
    chord::Protocol protocol_;
    std::vector<Envelope> requests_;  // sent, not yet answered by the reply op; oldest first
};

}  // namespace
}  // namespace chordkv::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace chordkv::fuzz;
    ByteReader in(data, size);
    Harness harness(static_cast<Setup>(in.u8() % kSetupCount));
    harness.run(in);
    return 0;
}
