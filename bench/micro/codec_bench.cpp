// Micro-benchmarks of the wire codec (net/codec.hpp, net/admin_codec.hpp): frames with and
// without the HMAC tag, protocol envelopes, and a data-path PutRequest with a 100-byte value.
//
// Benchmarks taking an argument `keyed` run without a cluster key (0) and with one (1), so the
// difference is the cost of HMAC-SHA256 over the frame.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "chord/messages.hpp"
#include "chord/node_id.hpp"
#include "net/admin_codec.hpp"
#include "net/codec.hpp"
#include "net/data.hpp"

namespace chordkv::net {
namespace {

// A 32-byte cluster key, as `openssl rand -hex 16` would give.
const std::string kClusterKey = "0123456789abcdef0123456789abcdef";

const std::string* key_for(const benchmark::State& state) {
    return state.range(0) != 0 ? &kClusterKey : nullptr;
}

chord::Peer peer(int i) {
    return chord::Peer{chord::NodeId::hash("10.0.0." + std::to_string(i) + ":7400#0"),
                       "10.0.0." + std::to_string(i) + ":7400"};
}

chord::Envelope envelope_of(chord::Message body, bool reply) {
    chord::Envelope e;
    e.from = peer(1);
    e.to_address = "10.0.0.2:7400";
    e.to_id = peer(2).id;
    e.rpc_id = 0x1234567890ULL;
    e.reply = reply;
    e.body = std::move(body);
    return e;
}

// The smallest request: a Ping.
chord::Envelope ping_envelope() {
    return envelope_of(chord::Ping{}, false);
}

// The typical large reply: a lookup step that is done, carrying a successor list of 8 peers.
chord::Envelope find_next_reply_envelope() {
    chord::FindNextReply reply;
    reply.done = true;
    for (int i = 0; i < 8; ++i) reply.peers.push_back(peer(10 + i));
    return envelope_of(std::move(reply), true);
}

PutRequest put_request() {
    PutRequest request;
    request.request_id = 42;
    request.key = "user:0000012345";
    request.value = std::string(100, 'v');
    return request;
}

// --- protocol envelopes --------------------------------------------------------------------

void encode_envelope_bench(benchmark::State& state, const chord::Envelope& envelope) {
    const std::string* key = key_for(state);
    std::size_t bytes = 0;
    for (auto _ : state) {
        std::string frame = encode_envelope(envelope, key);
        bytes += frame.size();
        benchmark::DoNotOptimize(frame.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}

void decode_envelope_bench(benchmark::State& state, const chord::Envelope& envelope) {
    const std::string* key = key_for(state);
    const std::string frame = encode_envelope(envelope, key);
    for (auto _ : state) {
        Result<chord::Envelope> decoded = decode_envelope(frame, kUdpFrameLimits, key);
        if (!decoded) {
            state.SkipWithError(decoded.error().message().c_str());
            break;
        }
        benchmark::DoNotOptimize(decoded);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}

void BM_EncodePing(benchmark::State& state) {
    encode_envelope_bench(state, ping_envelope());
}
BENCHMARK(BM_EncodePing)->ArgName("keyed")->Arg(0)->Arg(1);

void BM_DecodePing(benchmark::State& state) {
    decode_envelope_bench(state, ping_envelope());
}
BENCHMARK(BM_DecodePing)->ArgName("keyed")->Arg(0)->Arg(1);

void BM_EncodeFindNextReply8(benchmark::State& state) {
    encode_envelope_bench(state, find_next_reply_envelope());
}
BENCHMARK(BM_EncodeFindNextReply8)->ArgName("keyed")->Arg(0)->Arg(1);

void BM_DecodeFindNextReply8(benchmark::State& state) {
    decode_envelope_bench(state, find_next_reply_envelope());
}
BENCHMARK(BM_DecodeFindNextReply8)->ArgName("keyed")->Arg(0)->Arg(1);

// --- data path: PutRequest with a 100-byte value -------------------------------------------

void BM_EncodePutRequest100(benchmark::State& state) {
    const std::string* key = key_for(state);
    const PutRequest request = put_request();
    std::size_t bytes = 0;
    for (auto _ : state) {
        std::string frame = encode_admin(request, key);
        bytes += frame.size();
        benchmark::DoNotOptimize(frame.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_EncodePutRequest100)->ArgName("keyed")->Arg(0)->Arg(1);

// What a node does with a received data-path frame: check the frame, then decode its payload.
void BM_DecodePutRequest100(benchmark::State& state) {
    const std::string* key = key_for(state);
    const std::string frame = encode_admin(put_request(), key);
    for (auto _ : state) {
        Result<FrameView> view = decode_frame(frame, kTcpFrameLimits, key);
        if (!view) {
            state.SkipWithError(view.error().message().c_str());
            break;
        }
        Result<PutRequest> request = decode_admin<PutRequest>(view->payload);
        if (!request) {
            state.SkipWithError(request.error().message().c_str());
            break;
        }
        benchmark::DoNotOptimize(request);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_DecodePutRequest100)->ArgName("keyed")->Arg(0)->Arg(1);

// A TCP stream of PutRequest frames arriving in 1448-byte segments (an Ethernet MSS),
// reassembled by a FrameReader. Items are frames.
void BM_FrameReaderPutStream(benchmark::State& state) {
    const std::string* key = key_for(state);
    constexpr std::size_t kFrames = 256;
    constexpr std::size_t kSegmentBytes = 1448;
    std::string stream;
    for (std::size_t i = 0; i < kFrames; ++i) stream += encode_admin(put_request(), key);
    std::size_t frames = 0;
    for (auto _ : state) {
        FrameReader reader(kTcpFrameLimits, key);
        for (std::size_t at = 0; at < stream.size(); at += kSegmentBytes) {
            reader.append(std::string_view(stream).substr(at, kSegmentBytes));
            for (;;) {
                auto next = reader.next();
                if (!next || !*next) break;
                benchmark::DoNotOptimize((*next)->payload.data());
                ++frames;
            }
        }
    }
    if (frames != kFrames * static_cast<std::size_t>(state.iterations())) {
        state.SkipWithError("the reader lost frames");
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(frames));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(stream.size()));
}
BENCHMARK(BM_FrameReaderPutStream)->ArgName("keyed")->Arg(0)->Arg(1);

// --- raw frames: the fixed cost of a frame and the per-byte cost of the tag -----------------

void BM_EncodeFrame(benchmark::State& state) {
    const std::string* key = key_for(state);
    const std::string payload(static_cast<std::size_t>(state.range(1)), 'p');
    for (auto _ : state) {
        std::string frame = encode_frame(40, payload, key);
        benchmark::DoNotOptimize(frame.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * state.range(1));
}
BENCHMARK(BM_EncodeFrame)->ArgNames({"keyed", "payload"})->ArgsProduct({{0, 1}, {64, 1024, 16384}});

void BM_DecodeFrame(benchmark::State& state) {
    const std::string* key = key_for(state);
    const std::string payload(static_cast<std::size_t>(state.range(1)), 'p');
    const std::string frame = encode_frame(40, payload, key);
    for (auto _ : state) {
        Result<FrameView> view = decode_frame(frame, kTcpFrameLimits, key);
        if (!view) {
            state.SkipWithError(view.error().message().c_str());
            break;
        }
        benchmark::DoNotOptimize(view);
    }
    state.SetItemsProcessed(state.iterations());
    // Without a key the payload is only pointed at, never read: no per-byte rate to report.
    if (key != nullptr) state.SetBytesProcessed(state.iterations() * state.range(1));
}
BENCHMARK(BM_DecodeFrame)->ArgNames({"keyed", "payload"})->ArgsProduct({{0, 1}, {64, 1024, 16384}});

}  // namespace
}  // namespace chordkv::net
