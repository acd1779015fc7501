// fuzz_make_corpus: writes the seed corpus of every fuzz target, a handful of small valid inputs
// each, into <dir>/<target>/ (replacing what is there). The output is committed as
// fuzz/corpus/; regenerate it after a change to a message or an input format:
//
//     build-fuzz/fuzz/fuzz_make_corpus fuzz/corpus
//
// Deterministic: the same sources write the same bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chord/messages.hpp"
#include "chord/node_id.hpp"
#include "fuzz/fuzz_support.hpp"
#include "fuzz/message_types.hpp"
#include "fuzz/protocol_input.hpp"
#include "net/admin_codec.hpp"
#include "net/cluster_key.hpp"
#include "net/codec.hpp"
#include "storage/record.hpp"

namespace chordkv::fuzz {
namespace {

namespace fs = std::filesystem;
using chord::Envelope;
using chord::NodeId;
using chord::Peer;

class CorpusWriter {
public:
    CorpusWriter(fs::path root, std::string target) : dir_(std::move(root) / std::move(target)) {
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void write(const std::string& name, std::string_view bytes) {
        std::ofstream out(dir_ / name, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out) {
            std::fprintf(stderr, "fuzz_make_corpus: cannot write %s\n", (dir_ / name).c_str());
            std::exit(1);
        }
    }

private:
    fs::path dir_;
};

// --- sample messages --------------------------------------------------------------------

const std::vector<Peer>& members() {
    return ring_members();
}
const Peer& self() {
    return members()[kSelfIndex];
}

// The ring as the vnode under test sees it: its successors in ring order, self excluded.
// around()[0] is its successor, around().back() its predecessor.
std::vector<Peer> around() {
    std::vector<Peer> sorted = members();
    std::sort(sorted.begin(), sorted.end(),
              [](const Peer& a, const Peer& b) { return a.id < b.id; });
    const auto at = std::find(sorted.begin(), sorted.end(), self());
    std::rotate(sorted.begin(), at, sorted.end());
    sorted.erase(sorted.begin());
    return sorted;
}

std::vector<Peer> slice(std::size_t from, std::size_t count) {
    const std::vector<Peer> ring = around();
    std::vector<Peer> out;
    for (std::size_t i = from; i < from + count && i < ring.size(); ++i) out.push_back(ring[i]);
    return out;
}

// A vnode that no member knows, just before `to` on the ring.
Peer just_before(const Peer& to) {
    return Peer{to.id.prev(), "10.0.0.99:7400"};
}

Envelope to_self(const Peer& from, chord::Message body, chord::RpcId rpc_id = 7,
                 bool reply = false) {
    Envelope e;
    e.from = from;
    e.to_address = self().address;
    e.to_id = self().id;
    e.rpc_id = rpc_id;
    e.reply = reply;
    e.body = std::move(body);
    return e;
}

// One envelope of every protocol message type, named after it.
std::vector<std::pair<std::string, Envelope>> sample_envelopes() {
    const std::vector<Peer> ring = around();
    const Peer& succ = ring.front();
    const Peer& pred = ring.back();
    return {
        {"ping", to_self(pred, chord::Ping{})},
        {"pong", to_self(succ, chord::Pong{}, 7, true)},
        {"get_neighbors", to_self(pred, chord::GetNeighbors{})},
        {"neighbors", to_self(succ, chord::Neighbors{self(), slice(1, 4)}, 7, true)},
        {"find_next", to_self(pred, chord::FindNext{NodeId::hash("user:42")})},
        {"find_next_reply", to_self(succ, chord::FindNextReply{true, slice(0, 3)}, 7, true)},
        {"notify", to_self(pred, chord::Notify{})},
        {"leave", to_self(succ, chord::Leave{self(), slice(1, 3)})},
        {"leave_ack", to_self(succ, chord::LeaveAck{}, 7, true)},
    };
}

net::WireRecord sample_record() {
    return net::WireRecord{(std::uint64_t{1704067200000} << 16) | 3, false, "value-1"};
}

std::vector<net::SyncEntry> sample_entries() {
    return {net::SyncEntry{"user:1", sample_record()},
            net::SyncEntry{"user:2", net::WireRecord{42, true, ""}}};
}

// Name and payload of one message of every admin and data type, in kMessageTypes order.
std::vector<std::pair<std::string, std::string>> sample_payloads() {
    using namespace net;
    const std::vector<Peer> ring = around();
    VnodeInfo vnode;
    vnode.id = self().id;
    vnode.state = 2;
    vnode.predecessor = ring.back();
    vnode.successors = slice(0, 2);
    vnode.fingers_set = 12;
    vnode.keys_owned = 5;
    InfoReply info;
    info.request_id = 1;
    info.address = self().address;
    info.version = "0.1.0";
    info.vnodes = {vnode};
    info.keys_counted = true;
    const NodeId a = ring[2].id;
    const NodeId b = ring[5].id;
    std::vector<std::pair<std::string, std::string>> out = {
        {"info_request", encode_payload(InfoRequest{1, true})},
        {"info_reply", encode_payload(info)},
        {"lookup_request", encode_payload(LookupRequest{2, "user:1"})},
        {"lookup_reply",
         encode_payload(LookupReply{2, NodeId::hash("user:1"), ring[0], slice(0, 3), 2, 0})},
        {"leave_request", encode_payload(LeaveRequest{3})},
        {"leave_reply", encode_payload(LeaveReply{3, 17})},
        {"error_reply", encode_payload(ErrorReply{4, 6, "not responsible"})},
        {"put_request", encode_payload(PutRequest{5, "user:1", "hello", false, 1'800'000'000'000})},
        {"put_reply", encode_payload(PutReply{5, sample_record().version, 2})},
        {"get_request", encode_payload(GetRequest{6, "user:1", true})},
        {"get_reply", encode_payload(GetReply{6, true, sample_record().version, "hello"})},
        {"redirect", encode_payload(Redirect{7, ring[1].id, ring[1].address})},
        {"replicate_request", encode_payload(ReplicateRequest{8, "user:1", sample_record()})},
        {"replicate_reply", encode_payload(ReplicateReply{8, true})},
        {"read_replica_request", encode_payload(ReadReplicaRequest{9, "user:1"})},
        {"read_replica_reply", encode_payload(ReadReplicaReply{9, true, sample_record()})},
        {"sync_digest_request", encode_payload(SyncDigestRequest{10, a, b, 16})},
        {"sync_digest_reply",
         encode_payload(SyncDigestReply{10, std::string(64, '\x5a'), std::string(16, '\0')})},
        {"sync_scan_request",
         encode_payload(SyncScanRequest{11, a, b, storage::encode_data_key("user:1"), 64, 0})},
        {"sync_scan_reply", encode_payload(SyncScanReply{11, sample_entries(), std::nullopt})},
        {"replicate_batch_request", encode_payload(ReplicateBatchRequest{12, sample_entries(), 1})},
        {"replicate_batch_reply", encode_payload(ReplicateBatchReply{12, 2})},
        {"replica_set_request", encode_payload(ReplicaSetRequest{13, a})},
        {"replica_set_reply",
         encode_payload(ReplicaSetReply{13, true, {"127.0.0.1:7401", "127.0.0.1:7402"}})},
        {"replicate_writes_request", encode_payload(ReplicateWritesRequest{14, sample_entries()})},
        {"replicate_writes_reply", encode_payload(ReplicateWritesReply{14, 2})},
    };
    if (out.size() != kMessageTypeCount) {
        std::fprintf(stderr, "fuzz_make_corpus: a sample per message type is missing\n");
        std::exit(1);
    }
    return out;
}

// --- targets ----------------------------------------------------------------------------

// A stamp near the fuzzers' clock: `ms` after kNowMs, from a fixed sender.
net::FrameStamp stamp(std::uint64_t sequence, std::int64_t ms = 0) {
    return net::FrameStamp{static_cast<std::uint64_t>(kNowMs + ms), 0x5eed'c0de'0000'0001,
                           sequence};
}

// fuzz_frame's mode bits (fuzz_frame.cpp).
constexpr std::uint8_t kKeyed = 0x01;
constexpr std::uint8_t kSign = 0x02;
constexpr std::uint8_t kTcp = 0x04;
constexpr std::uint8_t kStream = 0x08;
constexpr std::uint8_t kGuarded = 0x10;

// A fuzz_frame input of datagrams, each received `step_s` seconds after the one before.
std::string datagrams_input(std::uint8_t mode,
                            const std::vector<std::pair<std::int8_t, std::string>>& datagrams) {
    std::string out;
    put_u8(out, mode);
    put_u8(out, 0);
    for (const auto& [step_s, bytes] : datagrams) {
        put_u8(out, static_cast<std::uint8_t>(step_s));
        put_sized(out, bytes);
    }
    return out;
}

std::string stream_input(std::uint8_t mode, std::uint8_t chunk, std::string_view stream) {
    std::string out;
    put_u8(out, mode);
    put_u8(out, chunk);
    out.append(stream);
    return out;
}

void write_frame_corpus(const fs::path& root) {
    CorpusWriter w(root, "fuzz_frame");
    const std::string& key = cluster_key();
    const auto envelopes = sample_envelopes();
    for (const auto& [name, e] : envelopes) {
        w.write("udp-" + name, datagrams_input(0, {{0, net::encode_envelope(e, nullptr)}}));
    }
    const auto payloads = sample_payloads();
    for (std::size_t i = 0; i < payloads.size(); ++i) {
        const auto& [name, payload] = payloads[i];
        w.write(
            "tcp-" + name,
            datagrams_input(kTcp, {{0, net::encode_frame(kMessageTypes[i], payload, nullptr)}}));
    }
    // Keyed: tags already right (no signing by the harness), and signed by the harness.
    w.write(
        "udp-keyed-neighbors",
        datagrams_input(kKeyed, {{0, net::encode_envelope(envelopes[3].second, &key, stamp(1))}}));
    w.write("udp-keyed-signed-find_next",
            datagrams_input(kKeyed | kSign,
                            {{0, net::encode_envelope(envelopes[4].second, &key, stamp(2))}}));
    // A keyed datagram, its replay, a stale stamp, and one after the clock moved on.
    const std::string ping = net::encode_envelope(envelopes[0].second, &key, stamp(3));
    w.write("udp-keyed-replay",
            datagrams_input(
                kKeyed, {{0, ping},
                         {0, ping},
                         {0, net::encode_envelope(envelopes[6].second, &key, stamp(4, -40'000))},
                         {45, net::encode_envelope(envelopes[2].second, &key, stamp(5, 45'000))}}));
    w.write("tcp-keyed-signed-put_request",
            datagrams_input(
                kKeyed | kSign | kTcp,
                {{0, net::encode_frame(kMessageTypes[7], payloads[7].second, &key, stamp(6))}}));
    // Streams of several frames, read in small chunks.
    std::string stream;
    for (std::size_t i : {7, 9, 0}) {
        stream += net::encode_frame(kMessageTypes[i], payloads[i].second, nullptr);
    }
    w.write("stream-put-get-info", stream_input(kTcp | kStream, 5, stream));
    // A keyed stream: the connector's stream-open frame, then frames in sequence.
    std::string keyed = net::encode_stream_open(net::StreamRole::connector, key, stamp(10));
    keyed += net::encode_frame(kMessageTypes[12], payloads[12].second, &key, stamp(11));
    keyed += net::encode_frame(kMessageTypes[20], payloads[20].second, &key, stamp(12, 5));
    w.write("stream-keyed-replicate", stream_input(kKeyed | kTcp | kStream | kGuarded, 64, keyed));
    w.write("stream-keyed-signed-replicate",
            stream_input(kKeyed | kSign | kTcp | kStream | kGuarded, 0, keyed));
    w.write("stream-keyed-unguarded", stream_input(kKeyed | kTcp | kStream, 9, keyed));
}

void write_data_corpus(const fs::path& root) {
    CorpusWriter w(root, "fuzz_data");
    const auto payloads = sample_payloads();
    for (std::size_t i = 0; i < payloads.size(); ++i) {
        std::string input;
        put_u8(input, static_cast<std::uint8_t>(i));
        input += payloads[i].second;
        w.write(payloads[i].first, input);
    }
    // Digest arcs that wrap, cover the whole ring, or have more buckets than ids.
    const std::uint8_t digest = 16;  // index of sync_digest_request in kMessageTypes
    const std::vector<std::pair<std::string, net::SyncDigestRequest>> arcs = {
        {"sync_digest_request-wrapping", {13, NodeId::max().prev(), NodeId::from_uint64(1000), 7}},
        {"sync_digest_request-whole-ring", {14, NodeId::hash("x"), NodeId::hash("x"), 4096}},
        {"sync_digest_request-tiny-arc", {15, NodeId::from_uint64(5), NodeId::from_uint64(8), 5}},
    };
    for (const auto& [name, request] : arcs) {
        std::string input;
        put_u8(input, digest);
        input += net::encode_payload(request);
        w.write(name, input);
    }
}

void write_record_corpus(const fs::path& root) {
    CorpusWriter w(root, "fuzz_record");
    w.write("record-value", storage::encode_record(sample_record().version, false, "hello"));
    w.write("record-empty-value", storage::encode_record(1, false, ""));
    w.write("record-tombstone", storage::encode_record(99, true, ""));
    w.write("storage-key", storage::encode_data_key("user:1"));
    const NodeId id = NodeId::hash("10.0.0.1:7400#0");
    w.write("node-id-hex", id.to_hex());
    const auto& raw = id.bytes();
    w.write("node-id-raw", std::string(reinterpret_cast<const char*>(raw.data()), raw.size()));
}

// Builds one fuzz_protocol input (protocol_input.hpp).
class Script {
public:
    explicit Script(Setup setup) { put_u8(bytes_, static_cast<std::uint8_t>(setup)); }

    Script& deliver(const Envelope& e) {
        op(Op::deliver);
        put_sized(bytes_, net::encode_envelope(e, nullptr));
        return *this;
    }
    // A reply to the pick-th most recent request this body answers (or, with kPickAny, any).
    Script& reply(chord::Message body, std::uint8_t pick = 0) {
        op(Op::reply);
        put_u8(bytes_, pick);
        put_sized(bytes_, net::encode_envelope(to_self(self(), std::move(body), 0, true), nullptr));
        return *this;
    }
    Script& advance(std::uint16_t ms) {
        op(Op::advance);
        put_u16(bytes_, ms);
        return *this;
    }
    Script& run_timers() {
        op(Op::run_timers);
        return *this;
    }
    Script& lookup(const NodeId& target) {
        op(Op::lookup);
        const auto& raw = target.bytes();
        bytes_.append(reinterpret_cast<const char*>(raw.data()), raw.size());
        return *this;
    }
    Script& leave() {
        op(Op::leave);
        return *this;
    }
    const std::string& bytes() const { return bytes_; }

private:
    void op(Op o) { put_u8(bytes_, static_cast<std::uint8_t>(o)); }
    std::string bytes_;
};

void write_protocol_corpus(const fs::path& root) {
    CorpusWriter w(root, "fuzz_protocol");
    const std::vector<Peer> ring = around();
    const Peer& succ = ring[0];
    const Peer& pred = ring.back();
    const Peer& far = ring[ring.size() / 2];
    // Requests from peers, including a notify from behind the predecessor (ping, then hint).
    w.write("ring-requests", Script(Setup::ring)
                                 .deliver(to_self(pred, chord::Ping{}))
                                 .deliver(to_self(pred, chord::GetNeighbors{}))
                                 .deliver(to_self(pred, chord::FindNext{far.id}))
                                 .deliver(to_self(pred, chord::FindNext{self().id}))
                                 .deliver(to_self(ring[ring.size() - 2], chord::Notify{}))
                                 .reply(chord::Pong{})
                                 .deliver(to_self(pred, chord::Notify{}))
                                 .bytes());
    // Stabilize and fix_fingers with answers.
    // Stabilize and fix_fingers with answers: the successor names a predecessor between us
    // (approached, then adopted), and finger lookups beyond the successor list take hops.
    Script stabilize(Setup::ring);
    stabilize.run_timers().run_timers().run_timers();
    stabilize.reply(chord::Neighbors{self(), slice(1, 7)});
    for (int i = 0; i < 6; ++i) stabilize.run_timers();
    stabilize.reply(chord::Neighbors{just_before(succ), slice(0, 6)})
        .reply(chord::Neighbors{self(), slice(0, 6)})
        .run_timers()
        .run_timers()
        .reply(chord::FindNextReply{false, slice(8, 2)})
        .reply(chord::FindNextReply{true, slice(9, 2)})
        .run_timers();
    w.write("ring-stabilize", stabilize.bytes());
    // Nobody answers: retries, a failed successor, probing the rest of the list.
    Script silent(Setup::ring);
    for (int i = 0; i < 8; ++i) silent.advance(700);
    silent.reply(chord::Neighbors{std::nullopt, slice(2, 5)}).advance(2000);
    w.write("ring-timeouts", silent.bytes());
    // The successor goes silent and is dropped; a later merge probe through it finds it alive.
    Script merge(Setup::ring);
    for (int i = 0; i < 5; ++i) merge.advance(700);
    merge.reply(chord::Neighbors{self(), slice(2, 6)}, 6)
        .advance(2500)
        .reply(chord::FindNextReply{true, slice(0, 3)})
        .run_timers()
        .reply(chord::Neighbors{self(), slice(1, 6)});
    w.write("ring-merge", merge.bytes());
    // This vnode leaves; both neighbours acknowledge.
    w.write("ring-leave", Script(Setup::ring)
                              .leave()
                              .reply(chord::LeaveAck{})
                              .reply(chord::LeaveAck{})
                              .advance(100)
                              .bytes());
    // Its neighbours leave.
    w.write("ring-neighbours-leave",
            Script(Setup::ring)
                .deliver(to_self(succ, chord::Leave{self(), slice(1, 7)}))
                .deliver(to_self(pred, chord::Leave{ring[ring.size() - 2], {self(), succ}}))
                .run_timers()
                .reply(chord::Neighbors{std::nullopt, slice(2, 6)})
                .bytes());
    // An unsolicited hint from the successor: a vnode between us, approached, then adopted.
    w.write("ring-hint",
            Script(Setup::ring)
                .deliver(to_self(succ, chord::Neighbors{just_before(succ), slice(1, 7)}))
                .reply(chord::Neighbors{self(), slice(0, 5)})
                .deliver(to_self(succ, chord::Neighbors{std::nullopt, slice(2, 3)}))
                .bytes());
    // A lookup that takes hops: a step that is not done, then one that is.
    w.write("ring-lookup",
            Script(Setup::ring)
                .lookup(ring[ring.size() - 2].id.next())
                .reply(chord::FindNextReply{false, {ring[ring.size() - 3], ring[ring.size() - 2]}})
                .reply(chord::FindNextReply{true, slice(ring.size() - 1, 1)})
                .lookup(far.id)
                .advance(400)
                .advance(900)
                .bytes());
    // Joining through a bootstrap address: the lookup answers, then the successor's list.
    w.write("join", Script(Setup::join)
                        .reply(chord::FindNextReply{true, slice(0, 4)})
                        .reply(chord::Neighbors{pred, slice(1, 6)})
                        .run_timers()
                        .reply(chord::Neighbors{self(), slice(1, 6)})
                        .bytes());
    w.write("join-timeout", Script(Setup::join).advance(1000).advance(1000).bytes());
    // A ring of one that another vnode notifies and then joins.
    w.write("alone", Script(Setup::alone)
                         .deliver(to_self(succ, chord::Notify{}))
                         .run_timers()
                         .run_timers()
                         .run_timers()
                         .reply(chord::Neighbors{self(), {self()}})
                         .deliver(to_self(succ, chord::GetNeighbors{}))
                         .deliver(to_self(succ, chord::FindNext{pred.id}))
                         .bytes());
}

}  // namespace
}  // namespace chordkv::fuzz

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <corpus-dir>   (e.g. fuzz/corpus)\n", argv[0]);
        return 2;
    }
    const std::filesystem::path root = argv[1];
    chordkv::fuzz::write_frame_corpus(root);
    chordkv::fuzz::write_data_corpus(root);
    chordkv::fuzz::write_record_corpus(root);
    chordkv::fuzz::write_protocol_corpus(root);
    return 0;
}
