#include "net/codec.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "net/request_client.hpp"
#include "net/transport.hpp"

// Records the largest single allocation so tests can prove that a hostile length prefix does
// not make the decoder allocate for it. Replacing the global operator new is allowed by the
// standard; these forward to malloc/free. Requests over kTestAllocationBytesMax fail with
// std::bad_alloc, so a regression in the decoder's guards fails the tests instead of
// exhausting the machine's memory.
namespace {
std::atomic<std::size_t> g_allocation_bytes_max{0};
constexpr std::size_t kTestAllocationBytesMax = std::size_t{1} << 30;

void* counted_allocation(std::size_t size) {
    std::size_t seen = g_allocation_bytes_max.load(std::memory_order_relaxed);
    while (size > seen && !g_allocation_bytes_max.compare_exchange_weak(seen, size)) {
    }
    if (size > kTestAllocationBytesMax) throw std::bad_alloc();
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t size) {
    return counted_allocation(size);
}
void* operator new[](std::size_t size) {
    return counted_allocation(size);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}

// A payload that carries another payload, encoded and decoded with encode_payload and
// decode_payload from inside its own serialize(): the thread's archives are then in use, and
// the inner call must get archives of its own.
namespace chordkv::net::test {
struct Nested {
    chord::Peer inner;
    std::uint64_t after = 0;
};
}  // namespace chordkv::net::test

namespace boost::serialization {
template <class Archive>
void save(Archive& ar, const chordkv::net::test::Nested& m, const unsigned int) {
    const std::string inner = chordkv::net::encode_payload(m.inner);
    ar << inner << m.after;
}
template <class Archive>
void load(Archive& ar, chordkv::net::test::Nested& m, const unsigned int) {
    std::string inner;
    ar >> inner;
    auto peer = chordkv::net::decode_payload<chordkv::chord::Peer>(inner);
    if (!peer) throw chordkv::net::PayloadBoundsError("inner payload: " + peer.error().detail());
    m.inner = *peer;
    ar >> m.after;
}
template <class Archive>
void serialize(Archive& ar, chordkv::net::test::Nested& m, const unsigned int version) {
    split_free(ar, m, version);
}
}  // namespace boost::serialization

CHORDKV_WIRE_STRUCT(chordkv::net::test::Nested)

namespace chordkv::net {
namespace {

using chord::Envelope;
using chord::Message;
using chord::NodeId;
using chord::Peer;

// --- helpers -----------------------------------------------------------------------------------

std::string to_hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out.push_back(kDigits[c >> 4]);
        out.push_back(kDigits[c & 0xF]);
    }
    return out;
}

// An id whose bytes are all set, starting with `first` (so the high bits are used).
NodeId id_from(std::uint8_t first) {
    NodeId::Bytes b{};
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(first + i * 7);
    return NodeId(b);
}

Peer peer(std::uint8_t first, std::string address) {
    return Peer{id_from(first), std::move(address)};
}

std::vector<Peer> peers(std::size_t n) {
    std::vector<Peer> out;
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(
            peer(static_cast<std::uint8_t>(0xF0 - i), "10.0.0." + std::to_string(i + 1) + ":7400"));
    }
    return out;
}

Envelope envelope(Message body, bool with_to_id = true) {
    Envelope e;
    e.from = peer(0xFE, "10.0.0.1:7400");
    e.to_address = "10.0.0.2:7400";
    if (with_to_id) e.to_id = id_from(0x81);
    e.rpc_id = 0xFEDCBA9876543210ull;
    e.reply = true;
    e.body = std::move(body);
    return e;
}

// Non-trivial instances of every message type, optionals both set and unset.
std::vector<Envelope> every_message() {
    std::vector<Envelope> out;
    out.push_back(envelope(chord::Ping{}));
    out.push_back(envelope(chord::Pong{}, false));
    out.push_back(envelope(chord::GetNeighbors{}));
    out.push_back(envelope(chord::Neighbors{peer(0xFF, "[::1]:7401"), peers(8)}));
    out.push_back(envelope(chord::Neighbors{std::nullopt, {}}, false));
    out.push_back(envelope(chord::FindNext{id_from(0xC3)}));
    out.push_back(envelope(chord::FindNextReply{true, peers(3)}));
    out.push_back(envelope(chord::FindNextReply{false, {}}));
    out.push_back(envelope(chord::Notify{}));
    out.push_back(envelope(chord::Leave{peer(0x99, "host.example:1"), peers(2)}));
    out.push_back(envelope(chord::Leave{std::nullopt, peers(1)}));
    out.push_back(envelope(chord::LeaveAck{}));
    return out;
}

bool same_body(const Message& a, const Message& b) {
    if (a.index() != b.index()) return false;
    if (const auto* x = std::get_if<chord::Neighbors>(&a)) {
        const auto& y = std::get<chord::Neighbors>(b);
        return x->predecessor == y.predecessor && x->successors == y.successors;
    }
    if (const auto* x = std::get_if<chord::FindNext>(&a)) {
        return x->target == std::get<chord::FindNext>(b).target;
    }
    if (const auto* x = std::get_if<chord::FindNextReply>(&a)) {
        const auto& y = std::get<chord::FindNextReply>(b);
        return x->done == y.done && x->peers == y.peers;
    }
    if (const auto* x = std::get_if<chord::Leave>(&a)) {
        const auto& y = std::get<chord::Leave>(b);
        return x->predecessor == y.predecessor && x->successors == y.successors;
    }
    return true;  // the empty messages
}

void expect_same(const Envelope& a, const Envelope& b) {
    EXPECT_EQ(a.from, b.from);
    EXPECT_EQ(a.to_address, b.to_address);
    EXPECT_EQ(a.to_id, b.to_id);
    EXPECT_EQ(a.rpc_id, b.rpc_id);
    EXPECT_EQ(a.reply, b.reply);
    EXPECT_TRUE(same_body(a.body, b.body)) << chord::message_name(a.body);
}

const std::string kKey = "cluster-key-for-tests";
const std::string kOtherKey = "another-cluster-key";

// A fixed stamp for golden bytes and exact re-encoding.
constexpr FrameStamp kGoldenStamp{0x0000018f2a3b4c5dull, 0x0123456789abcdefull, 7};

// --- frame layer -------------------------------------------------------------------------------

TEST(FrameTest, EncodeFrameGoldenBytes) {
    const std::string plain = encode_frame(0x05, "abc", nullptr);
    EXPECT_EQ(to_hex(plain),
              "434b5646"
              "01"
              "05"
              "00"
              "00"
              "00000003"
              "616263")
        << "actual: " << to_hex(plain);

    const std::string tagged = encode_frame(0x05, "abc", &kKey, kGoldenStamp);
    const std::string expected_tagged =
        "434b5646"
        "01"
        "05"
        "03"  // flags: MAC tag and stamp
        "00"
        "00000003"
        "616263"
        // stamp: sent_at_ms, sender, sequence (u64 big-endian each)
        "0000018f2a3b4c5d"
        "0123456789abcdef"
        "0000000000000007"
        // HMAC-SHA256("cluster-key-for-tests", header + payload + stamp), checked with
        // Python's hmac
        "4f54c2d9172b6a44b6800c75ab43164fe1fce07406ceb301c04d0d941b11d8be";
    EXPECT_EQ(to_hex(tagged), expected_tagged) << "actual: " << to_hex(tagged);
    // A keyless frame has no stamp: its bytes are those of the format before stamps.
    EXPECT_EQ(encode_frame(0x05, "abc", nullptr, kGoldenStamp), plain);
}

TEST(FrameTest, StreamOpenGoldenBytes) {
    const std::string open = encode_stream_open(StreamRole::connector, kKey, kGoldenStamp);
    EXPECT_EQ(to_hex(open).substr(0, 2 * (kFrameHeaderBytes + 1 + kFrameStampBytes)),
              "434b5646"
              "01"
              "1f"  // kStreamOpenType
              "03"
              "00"
              "00000001"
              "01"  // StreamRole::connector
              "0000018f2a3b4c5d"
              "0123456789abcdef"
              "0000000000000007")
        << "actual: " << to_hex(open);
    EXPECT_EQ(open.size(), kFrameHeaderBytes + 1 + kFrameAuthBytes);
}

TEST(FrameTest, StampsComeFromTheProcessCounter) {
    const std::string a = encode_frame(7, "x", &kKey);
    const std::string b = encode_frame(7, "x", &kKey);
    EXPECT_NE(a, b);  // never two identical keyed frames
    auto da = decode_frame(a, kUdpFrameLimits, &kKey);
    auto db = decode_frame(b, kUdpFrameLimits, &kKey);
    ASSERT_TRUE(da && db);
    EXPECT_EQ(da->stamp.sender, frame_sender_id());
    EXPECT_EQ(db->stamp.sender, frame_sender_id());
    EXPECT_LT(da->stamp.sequence, db->stamp.sequence);
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    EXPECT_LE(da->stamp.sent_at_ms, static_cast<std::uint64_t>(now_ms));
    EXPECT_GT(da->stamp.sent_at_ms + 10'000, static_cast<std::uint64_t>(now_ms));
}

TEST(FrameTest, RoundTripWithAndWithoutKey) {
    for (const std::string* key : {static_cast<const std::string*>(nullptr), &kKey}) {
        for (const std::string& payload :
             {std::string(), std::string("x"), std::string(1000, 'z')}) {
            const std::string frame = encode_frame(42, payload, key, kGoldenStamp);
            EXPECT_EQ(frame.size(),
                      kFrameHeaderBytes + payload.size() + (key ? kFrameAuthBytes : 0));
            auto decoded = decode_frame(frame, kUdpFrameLimits, key);
            ASSERT_TRUE(decoded) << decoded.error().message();
            EXPECT_EQ(decoded->type, 42);
            EXPECT_EQ(decoded->flags, key ? kFrameFlagMac | kFrameFlagStamp : 0);
            EXPECT_EQ(decoded->payload, payload);
            EXPECT_EQ(decoded->stamp, key ? kGoldenStamp : FrameStamp{});
        }
    }
}

TEST(FrameTest, UdpLimitFitsADatagram) {
    EXPECT_EQ(kFrameHeaderBytes + kUdpPayloadBytesMax + kFrameAuthBytes, kUdpDatagramBytesMax);
    const std::string largest = encode_frame(1, std::string(kUdpPayloadBytesMax, 'a'), &kKey);
    EXPECT_EQ(largest.size(), kUdpDatagramBytesMax);
    EXPECT_TRUE(decode_frame(largest, kUdpFrameLimits, &kKey));
    EXPECT_GE(kTcpPayloadBytesMax, (16u << 20) + (64u << 10));
}

TEST(FrameTest, EveryTruncationIsMalformed) {
    for (const std::string* key : {static_cast<const std::string*>(nullptr), &kKey}) {
        const std::string frame = encode_frame(7, "some payload bytes", key);
        for (std::size_t n = 0; n < frame.size(); ++n) {
            auto r = decode_frame(std::string_view(frame).substr(0, n), kUdpFrameLimits, key);
            ASSERT_FALSE(r) << "prefix " << n;
            EXPECT_EQ(r.code(), Errc::malformed_message) << "prefix " << n;
        }
    }
}

TEST(FrameTest, TrailingBytesAreMalformed) {
    const std::string frame = encode_frame(7, "payload", nullptr) + "x";
    auto r = decode_frame(frame, kUdpFrameLimits, nullptr);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::malformed_message);
}

TEST(FrameTest, OversizedDeclaredLengthIsTooLarge) {
    // Declared length one over the limit; the bytes need not be there.
    std::string frame = encode_frame(7, "", nullptr);
    const std::uint32_t declared = static_cast<std::uint32_t>(kUdpPayloadBytesMax + 1);
    for (int i = 0; i < 4; ++i) frame[8 + i] = static_cast<char>(declared >> (24 - 8 * i));
    auto r = decode_frame(frame, kUdpFrameLimits, nullptr);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::too_large) << r.error().message();

    // A frame at exactly the TCP limit passes TCP limits and fails UDP ones.
    const std::string big = encode_frame(33, std::string(kUdpPayloadBytesMax + 1, 'v'), nullptr);
    EXPECT_TRUE(decode_frame(big, kTcpFrameLimits, nullptr));
    EXPECT_EQ(decode_frame(big, kUdpFrameLimits, nullptr).code(), Errc::too_large);

    // The largest u32 length against custom limits.
    frame[8] = frame[9] = frame[10] = frame[11] = '\xff';
    EXPECT_EQ(decode_frame(frame, FrameLimits{1024}, nullptr).code(), Errc::too_large);
}

TEST(FrameTest, BadHeaderFieldsAreMalformed) {
    const std::string good = encode_frame(7, "payload", nullptr);
    struct Case {
        std::size_t offset;
        char value;
        const char* what;
    };
    for (const Case& c :
         {Case{0, 'X', "magic"}, Case{3, 'G', "magic"}, Case{4, 0, "version 0"},
          Case{4, 2, "version 2"}, Case{6, 2, "stamp without a tag"}, Case{6, 4, "unknown flag"},
          Case{6, '\x80', "unknown flag"}, Case{7, 1, "reserved"}}) {
        std::string bad = good;
        bad[c.offset] = c.value;
        auto r = decode_frame(bad, kUdpFrameLimits, nullptr);
        ASSERT_FALSE(r) << c.what;
        EXPECT_EQ(r.code(), Errc::malformed_message) << c.what << ": " << r.error().message();
    }
}

// --- MAC ---------------------------------------------------------------------------------------

TEST(MacTest, WrongKeyIsUnauthenticated) {
    const std::string frame = encode_frame(7, "payload", &kKey);
    auto r = decode_frame(frame, kUdpFrameLimits, &kOtherKey);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::unauthenticated);
}

TEST(MacTest, MissingTagIsUnauthenticatedWhenKeyed) {
    const std::string frame = encode_frame(7, "payload", nullptr);
    auto r = decode_frame(frame, kUdpFrameLimits, &kKey);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::unauthenticated);

    // Stripping stamp and tag and clearing the flags is the same thing: the flags are under
    // the MAC.
    std::string stripped = encode_frame(7, "payload", &kKey);
    stripped.resize(stripped.size() - kFrameAuthBytes);
    stripped[6] = 0;
    EXPECT_EQ(decode_frame(stripped, kUdpFrameLimits, &kKey).code(), Errc::unauthenticated);
}

// A tag without a stamp — the keyed format before replay protection — is refused by a keyed
// node even when the tag is right: it could be a replay.
TEST(MacTest, TagWithoutStampIsUnauthenticated) {
    std::string old_format = encode_frame(7, "payload", nullptr);
    old_format[6] = static_cast<char>(kFrameFlagMac);
    unsigned char tag[kMacTagBytes];
    unsigned int tag_bytes = 0;
    HMAC(EVP_sha256(), kKey.data(), static_cast<int>(kKey.size()),
         reinterpret_cast<const unsigned char*>(old_format.data()), old_format.size(), tag,
         &tag_bytes);
    ASSERT_EQ(tag_bytes, kMacTagBytes);
    old_format.append(reinterpret_cast<const char*>(tag), kMacTagBytes);
    auto r = decode_frame(old_format, kUdpFrameLimits, &kKey);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::unauthenticated);
    EXPECT_NE(r.error().detail().find("stamp"), std::string::npos) << r.error().detail();
}

TEST(MacTest, TaggedFrameIsUnauthenticatedWithoutKey) {
    const std::string frame = encode_frame(7, "payload", &kKey);
    auto r = decode_frame(frame, kUdpFrameLimits, nullptr);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::unauthenticated);
}

TEST(MacTest, EveryFlippedBitIsUnauthenticated) {
    const std::string frame = encode_frame(7, "payload", &kKey);
    // Bits of the type byte, the payload, the stamp and the tag: the header's other fields fail
    // earlier structural checks (covered by the corruption tests).
    for (std::size_t i = 5; i < frame.size(); ++i) {
        if (i >= 6 && i < kFrameHeaderBytes) continue;
        for (int bit = 0; bit < 8; ++bit) {
            std::string bad = frame;
            bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
            auto r = decode_frame(bad, kUdpFrameLimits, &kKey);
            ASSERT_FALSE(r) << "byte " << i << " bit " << bit;
            EXPECT_EQ(r.code(), Errc::unauthenticated) << "byte " << i << " bit " << bit;
        }
    }
}

// --- envelopes ---------------------------------------------------------------------------------

TEST(EnvelopeTest, RoundTripsEveryMessageTypeWithAndWithoutKey) {
    std::vector<bool> seen(std::variant_size_v<Message>, false);
    for (const std::string* key : {static_cast<const std::string*>(nullptr), &kKey}) {
        for (const Envelope& e : every_message()) {
            seen[e.body.index()] = true;
            const std::string frame = encode_envelope(e, key);
            EXPECT_EQ(static_cast<std::uint8_t>(frame[5]),
                      static_cast<std::uint8_t>(wire_type(e.body)));
            auto decoded = decode_envelope(frame, kUdpFrameLimits, key);
            ASSERT_TRUE(decoded) << chord::message_name(e.body) << ": "
                                 << decoded.error().message();
            expect_same(e, *decoded);
        }
    }
    for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_TRUE(seen[i]) << "variant index " << i;
}

TEST(EnvelopeTest, WireTypesAreStable) {
    EXPECT_EQ(static_cast<int>(wire_type(chord::Ping{})), 1);
    EXPECT_EQ(static_cast<int>(wire_type(chord::Pong{})), 2);
    EXPECT_EQ(static_cast<int>(wire_type(chord::GetNeighbors{})), 3);
    EXPECT_EQ(static_cast<int>(wire_type(chord::Neighbors{})), 4);
    EXPECT_EQ(static_cast<int>(wire_type(chord::FindNext{})), 5);
    EXPECT_EQ(static_cast<int>(wire_type(chord::FindNextReply{})), 6);
    EXPECT_EQ(static_cast<int>(wire_type(chord::Notify{})), 7);
    EXPECT_EQ(static_cast<int>(wire_type(chord::Leave{})), 8);
    EXPECT_EQ(static_cast<int>(wire_type(chord::LeaveAck{})), 9);
}

Envelope golden_ping() {
    Envelope e;
    e.from = Peer{NodeId::from_uint64(0x0102030405060708ull), "a:1"};
    e.to_address = "b:2";
    e.to_id = NodeId::max();
    e.rpc_id = 0x1122334455667788ull;
    e.reply = false;
    e.body = chord::Ping{};
    return e;
}

TEST(EnvelopeTest, PingGoldenBytes) {
    const std::string frame = encode_envelope(golden_ping(), nullptr);
    const std::string expected =
        // header: magic, version 1, type 1 (ping), flags 0, reserved 0, payload length 72
        "434b5646"
        "01"
        "01"
        "00"
        "00"
        "00000048"
        // from.id (20 bytes, big-endian)
        "000000000000000000000000"
        "0102030405060708"
        // from.address: u64 length 3, "a:1"
        "0300000000000000"
        "613a31"
        // to_address: u64 length 3, "b:2"
        "0300000000000000"
        "623a32"
        // to_id: present, 20 x 0xff
        "01"
        "ffffffffffffffffffffffffffffffffffffffff"
        // rpc_id (u64 little-endian), reply = false; Ping has no fields
        "8877665544332211"
        "00";
    EXPECT_EQ(to_hex(frame), expected) << "actual: " << to_hex(frame);
}

TEST(EnvelopeTest, NeighborsGoldenBytes) {
    Envelope e;
    e.from = Peer{NodeId::from_uint64(1), "n:1"};
    e.to_address = "m:2";
    e.to_id = std::nullopt;
    e.rpc_id = 7;
    e.reply = true;
    e.body = chord::Neighbors{
        Peer{NodeId::from_uint64(0xAA), "p:3"},
        {Peer{NodeId::from_uint64(0xBB), "s:4"}, Peer{NodeId::from_uint64(0xCC), "t:5"}}};
    const std::string frame = encode_envelope(e, nullptr);
    const std::string expected =
        // header: type 4 (neighbors), payload length 158
        "434b5646"
        "01"
        "04"
        "00"
        "00"
        "0000009e"
        // from.id, from.address "n:1", to_address "m:2", to_id absent
        "0000000000000000000000000000000000000001"
        "0300000000000000"
        "6e3a31"
        "0300000000000000"
        "6d3a32"
        "00"
        // rpc_id 7, reply = true
        "0700000000000000"
        "01"
        // predecessor: present, id 0xaa, "p:3"
        "01"
        "00000000000000000000000000000000000000aa"
        "0300000000000000"
        "703a33"
        // successors: u64 count 2, u32 item version 0, then two peers
        "0200000000000000"
        "00000000"
        "00000000000000000000000000000000000000bb"
        "0300000000000000"
        "733a34"
        "00000000000000000000000000000000000000cc"
        "0300000000000000"
        "743a35";
    EXPECT_EQ(to_hex(frame), expected) << "actual: " << to_hex(frame);
}

TEST(EnvelopeTest, TypicalSizes) {
    Envelope find = envelope(chord::FindNext{id_from(0x42)});
    find.reply = false;
    const std::string find_frame = encode_envelope(find, &kKey);
    const std::string neighbors_frame =
        encode_envelope(envelope(chord::Neighbors{peer(0x10, "10.0.0.9:7400"), peers(8)}), &kKey);
    std::printf("FindNext envelope: %zu bytes (with tag); Neighbors(8 peers): %zu bytes\n",
                find_frame.size(), neighbors_frame.size());
    // header 12 + from (20 + 8 + 13) + to (8 + 13) + to_id 21 + rpc 8 + reply 1 + target 20
    // + stamp 24 + tag 32
    EXPECT_EQ(find_frame.size(), 12u + 41 + 21 + 21 + 8 + 1 + 20 + 24 + 32);
    EXPECT_LT(neighbors_frame.size(), kUdpDatagramBytesMax);
}

TEST(EnvelopeTest, EveryTruncationIsAnError) {
    for (const std::string* key : {static_cast<const std::string*>(nullptr), &kKey}) {
        for (const Envelope& e : every_message()) {
            const std::string frame = encode_envelope(e, key);
            for (std::size_t n = 0; n < frame.size(); ++n) {
                auto r =
                    decode_envelope(std::string_view(frame).substr(0, n), kUdpFrameLimits, key);
                ASSERT_FALSE(r) << chord::message_name(e.body) << " prefix " << n;
            }
        }
    }
}

// A payload cut short inside the archive (frame length adjusted to match) is malformed too.
TEST(EnvelopeTest, EveryPayloadTruncationIsMalformed) {
    const Envelope e = envelope(chord::Neighbors{peer(0xFF, "[::1]:7401"), peers(3)});
    const std::string frame = encode_envelope(e, nullptr);
    const std::string_view payload = std::string_view(frame).substr(kFrameHeaderBytes);
    for (std::size_t n = 0; n < payload.size(); ++n) {
        const std::string cut = encode_frame(frame[5], payload.substr(0, n), nullptr);
        auto r = decode_envelope(cut, kUdpFrameLimits, nullptr);
        ASSERT_FALSE(r) << "payload prefix " << n;
        EXPECT_EQ(r.code(), Errc::malformed_message) << "payload prefix " << n;
    }
}

TEST(EnvelopeTest, EverySingleByteCorruptionIsHandled) {
    int decoded_anyway = 0;
    for (const Envelope& e : every_message()) {
        const std::string plain = encode_envelope(e, nullptr);
        const std::string tagged = encode_envelope(e, &kKey);
        for (std::size_t i = 0; i < plain.size(); ++i) {
            for (std::uint8_t flip : {0x01, 0x02, 0x10, 0x80, 0xFF}) {
                std::string bad = plain;
                bad[i] = static_cast<char>(bad[i] ^ flip);
                auto r = decode_envelope(bad, kUdpFrameLimits, nullptr);
                // Magic, version, flags, reserved and length can never survive a change.
                if (i < kFrameHeaderBytes && i != 5) {
                    EXPECT_FALSE(r) << "header byte " << i;
                }
                if (r) ++decoded_anyway;
            }
        }
        for (std::size_t i = 0; i < tagged.size(); ++i) {
            for (std::uint8_t flip : {0x01, 0x80, 0xFF}) {
                std::string bad = tagged;
                bad[i] = static_cast<char>(bad[i] ^ flip);
                auto r = decode_envelope(bad, kUdpFrameLimits, &kKey);
                ASSERT_FALSE(r) << "keyed, byte " << i;
            }
        }
    }
    // Bytes inside ids, addresses and rpc ids decode to different values; that is expected.
    EXPECT_GT(decoded_anyway, 0);
}

TEST(EnvelopeTest, RandomGarbageIsAnError) {
    std::mt19937_64 rng(20240601);
    std::uniform_int_distribution<std::size_t> size_of(0, 256);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int round = 0; round < 10000; ++round) {
        std::string junk(size_of(rng), '\0');
        for (char& c : junk) c = static_cast<char>(byte(rng));
        auto r = decode_envelope(junk, kUdpFrameLimits, nullptr);
        ASSERT_FALSE(r) << "seed 20240601 round " << round;
        EXPECT_FALSE(decode_envelope(junk, kUdpFrameLimits, &kKey)) << "round " << round;
    }
}

// Random payloads behind a valid header reach the archive: any outcome but a crash is fine.
TEST(EnvelopeTest, RandomPayloadsNeverCrash) {
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<std::size_t> size_of(0, 200);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<int> type(0, 12);
    int errors = 0;
    for (int round = 0; round < 10000; ++round) {
        std::string payload(size_of(rng), '\0');
        for (char& c : payload) c = static_cast<char>(byte(rng));
        const std::string frame =
            encode_frame(static_cast<std::uint8_t>(type(rng)), payload, nullptr);
        if (!decode_envelope(frame, kUdpFrameLimits, nullptr)) ++errors;
    }
    EXPECT_GT(errors, 9000);
}

TEST(EnvelopeTest, UnknownTypeIsMalformed) {
    const std::string payload =
        std::string(encode_envelope(envelope(chord::Ping{}), nullptr)).substr(kFrameHeaderBytes);
    for (std::uint8_t type : {0, 10, 31, 32, 255}) {
        auto r = decode_envelope(encode_frame(type, payload, nullptr), kUdpFrameLimits, nullptr);
        ASSERT_FALSE(r) << int{type};
        EXPECT_EQ(r.code(), Errc::malformed_message) << int{type};
    }
}

TEST(EnvelopeTest, TrailingBytesAfterBodyAreMalformed) {
    const std::string frame = encode_envelope(envelope(chord::FindNext{id_from(1)}), nullptr);
    const std::string payload = frame.substr(kFrameHeaderBytes) + '\0';
    auto r = decode_envelope(encode_frame(frame[5], payload, nullptr), kUdpFrameLimits, nullptr);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::malformed_message);
    EXPECT_NE(r.error().message().find("trailing"), std::string::npos) << r.error().message();
}

TEST(EnvelopeTest, BoolOtherThanZeroOrOneIsMalformed) {
    std::string frame = encode_envelope(golden_ping(), nullptr);
    frame.back() = 2;  // the reply flag
    auto r = decode_envelope(frame, kUdpFrameLimits, nullptr);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::malformed_message);
}

TEST(EnvelopeTest, SemanticBoundsAreEnforced) {
    Envelope ok = envelope(chord::Neighbors{std::nullopt, peers(kPeerListMax)});
    ok.from.address = std::string(kAddressBytesMax, 'a');
    EXPECT_TRUE(decode_envelope(encode_envelope(ok, nullptr), kUdpFrameLimits, nullptr));

    Envelope long_address = ok;
    long_address.from.address.push_back('a');
    EXPECT_EQ(
        decode_envelope(encode_envelope(long_address, nullptr), kUdpFrameLimits, nullptr).code(),
        Errc::malformed_message);

    Envelope long_peer = envelope(chord::FindNextReply{false, peers(2)});
    std::get<chord::FindNextReply>(long_peer.body).peers[1].address =
        std::string(kAddressBytesMax + 1, 'p');
    EXPECT_EQ(decode_envelope(encode_envelope(long_peer, nullptr), kUdpFrameLimits, nullptr).code(),
              Errc::malformed_message);

    for (Message body : {Message(chord::Neighbors{std::nullopt, peers(kPeerListMax + 1)}),
                         Message(chord::FindNextReply{true, peers(kPeerListMax + 1)}),
                         Message(chord::Leave{std::nullopt, peers(kPeerListMax + 1)})}) {
        auto r =
            decode_envelope(encode_envelope(envelope(body), nullptr), kUdpFrameLimits, nullptr);
        ASSERT_FALSE(r) << chord::message_name(body);
        EXPECT_EQ(r.code(), Errc::malformed_message);
    }
}

TEST(EnvelopeTest, FrameErrorsPassThrough) {
    const std::string frame = encode_envelope(envelope(chord::Ping{}), &kKey);
    EXPECT_EQ(decode_envelope(frame, kUdpFrameLimits, &kOtherKey).code(), Errc::unauthenticated);
    EXPECT_EQ(decode_envelope(frame, kUdpFrameLimits, nullptr).code(), Errc::unauthenticated);
    EXPECT_EQ(decode_envelope(frame, FrameLimits{8}, &kKey).code(), Errc::too_large);
}

// --- hostile length prefixes -------------------------------------------------------------------

std::string u64_le(std::uint64_t v) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
    return out;
}

// Decodes `frame` and checks it fails as malformed quickly, allocating no more than 1 MiB at once.
void expect_rejected_cheaply(const std::string& frame, const char* what) {
    g_allocation_bytes_max = 0;
    const auto start = std::chrono::steady_clock::now();
    auto r = decode_envelope(frame, kTcpFrameLimits, nullptr);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(r) << what;
    EXPECT_EQ(r.code(), Errc::malformed_message) << what;
    EXPECT_LT(g_allocation_bytes_max.load(), std::size_t{1} << 20) << what;
    EXPECT_LT(elapsed, std::chrono::seconds(1)) << what;
}

TEST(HostileLengthTest, HugeStringLengthIsMalformedWithoutAllocating) {
    for (std::uint64_t huge : {std::uint64_t{1} << 40, std::uint64_t{1} << 60, ~std::uint64_t{0},
                               std::uint64_t{kAddressBytesMax + 1}}) {
        // Ping whose from.address declares `huge` bytes.
        const std::string payload = std::string(20, '\x01') + u64_le(huge) + "a:1";
        expect_rejected_cheaply(encode_frame(1, payload, nullptr), "huge address");
    }
}

TEST(HostileLengthTest, HugeCollectionCountIsMalformedWithoutAllocating) {
    Envelope e = envelope(chord::Neighbors{std::nullopt, {}}, false);
    const std::string frame = encode_envelope(e, nullptr);
    // The payload ends with: predecessor absent (1), count (8), item version (4).
    const std::string prefix =
        frame.substr(kFrameHeaderBytes, frame.size() - kFrameHeaderBytes - 12);
    for (std::uint64_t huge : {std::uint64_t{1} << 40, std::uint64_t{1} << 60, ~std::uint64_t{0},
                               std::uint64_t{1000}, std::uint64_t{kPeerListMax + 1}}) {
        const std::string payload =
            prefix + u64_le(huge) + std::string(4, '\0') + std::string(4096, '\0');
        expect_rejected_cheaply(encode_frame(4, payload, nullptr), "huge successor count");
    }
}

TEST(HostileLengthTest, GenericDecoderBoundsByBytesLeft) {
    g_allocation_bytes_max = 0;
    auto s = decode_payload<std::string>(u64_le(std::uint64_t{1} << 40) + "abc");
    ASSERT_FALSE(s);
    EXPECT_EQ(s.code(), Errc::malformed_message);

    auto v = decode_payload<std::vector<Peer>>(u64_le(std::uint64_t{1} << 40) +
                                               std::string(4, '\0') + std::string(100, 'x'));
    ASSERT_FALSE(v);
    EXPECT_EQ(v.code(), Errc::malformed_message);
    EXPECT_LT(g_allocation_bytes_max.load(), std::size_t{1} << 20);

    // The count is also held to PayloadLimits::collection_size_max.
    const std::string three = encode_payload(peers(3));
    EXPECT_TRUE(decode_payload<std::vector<Peer>>(three));
    EXPECT_EQ(decode_payload<std::vector<Peer>>(three, PayloadLimits{2}).code(),
              Errc::malformed_message);
}

// --- generic payloads --------------------------------------------------------------------------

TEST(PayloadTest, RoundTripsAndRejectsTrailingBytes) {
    const Peer p = peer(0xAB, "example.org:7400");
    const std::string bytes = encode_payload(p);
    auto back = decode_payload<Peer>(bytes);
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(*back, p);
    EXPECT_EQ(decode_payload<Peer>(bytes + "x").code(), Errc::malformed_message);

    const std::optional<NodeId> some = id_from(9);
    auto some_back = decode_payload<std::optional<NodeId>>(encode_payload(some));
    ASSERT_TRUE(some_back);
    EXPECT_EQ(*some_back, some);

    const std::string frame = encode_message_frame(40, p, &kKey, kGoldenStamp);
    auto view = decode_frame(frame, kUdpFrameLimits, &kKey);
    ASSERT_TRUE(view);
    EXPECT_EQ(view->type, 40);
    EXPECT_EQ(view->payload, bytes);
    EXPECT_EQ(view->stamp, kGoldenStamp);
    EXPECT_EQ(frame, encode_frame(40, bytes, &kKey, kGoldenStamp));
}

// --- archive reuse: one archive per thread, reused (net/serialization.hpp) ---------------------

// Every way a payload can fail inside the archive, each followed by a good decode on the same
// thread: an archive that threw is rebuilt, so no half-read state reaches the next message.
TEST(ArchiveReuseTest, MalformedInputDoesNotSpoilTheNextDecode) {
    const Envelope good = envelope(chord::Neighbors{peer(0xFF, "[::1]:7401"), peers(8)});
    const std::string frame = encode_envelope(good, nullptr);
    const std::string payload = frame.substr(kFrameHeaderBytes);
    const auto type = static_cast<std::uint8_t>(WireType::neighbors);

    std::vector<std::string> bad;
    for (std::size_t cut = 0; cut < payload.size(); ++cut) {  // Boost's input_stream_error
        bad.push_back(encode_frame(type, payload.substr(0, cut), nullptr));
    }
    bad.push_back(encode_frame(type, payload + "x", nullptr));  // trailing
    bad.push_back(encode_frame(type, std::string(20, '\x01') + u64_le(1000) + "a", nullptr));
    std::string bad_bool = encode_envelope(golden_ping(), nullptr);
    bad_bool.back() = 2;
    bad.push_back(bad_bool);

    for (const std::string& b : bad) {
        ASSERT_FALSE(decode_envelope(b, kUdpFrameLimits, nullptr));
        auto r = decode_envelope(frame, kUdpFrameLimits, nullptr);
        ASSERT_TRUE(r) << r.error().message();
        expect_same(*r, good);
    }

    // The generic decoder shares the thread's archive with decode_envelope.
    const Peer p = peer(0xAB, "example.org:7400");
    const std::string bytes = encode_payload(p);
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
        ASSERT_FALSE(decode_payload<Peer>(bytes.substr(0, cut)));
        auto back = decode_payload<Peer>(bytes);
        ASSERT_TRUE(back) << back.error().message();
        EXPECT_EQ(*back, p);
        ASSERT_FALSE(decode_payload<std::optional<NodeId>>(std::string(1, '\x02')));
        ASSERT_TRUE(decode_envelope(frame, kUdpFrameLimits, nullptr));
    }
}

// A reused archive writes the same bytes as a fresh one, whatever it wrote before.
TEST(ArchiveReuseTest, EncodingDoesNotDependOnEarlierMessages) {
    const std::vector<Envelope> messages = every_message();
    std::vector<std::string> first;
    for (const Envelope& e : messages) first.push_back(encode_envelope(e, nullptr));
    for (std::size_t i = messages.size(); i-- > 0;) {
        EXPECT_EQ(encode_payload(peers(i)), encode_payload(peers(i)));
        EXPECT_EQ(encode_envelope(messages[i], nullptr), first[i]) << i;
    }
}

TEST(ArchiveReuseTest, NestedEncodeAndDecodeOnOneThread) {
    const test::Nested nested{peer(0x42, "inner.example:7400"), 0x0102030405060708ull};
    const std::string bytes = encode_payload(nested);
    // The inner payload travels as a string: its length, then the Peer's archive.
    EXPECT_EQ(bytes, u64_le(encode_payload(nested.inner).size()) + encode_payload(nested.inner) +
                         u64_le(nested.after));
    for (int round = 0; round < 3; ++round) {
        auto back = decode_payload<test::Nested>(bytes);
        ASSERT_TRUE(back) << back.error().message();
        EXPECT_EQ(back->inner, nested.inner);
        EXPECT_EQ(back->after, nested.after);
    }

    // The inner decode fails: so does the outer one, and both archives recover.
    std::string broken = u64_le(3) + "abc" + u64_le(nested.after);
    auto r = decode_payload<test::Nested>(broken);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::malformed_message);
    EXPECT_NE(r.error().detail().find("inner payload"), std::string::npos) << r.error().detail();
    auto again = decode_payload<test::Nested>(bytes);
    ASSERT_TRUE(again) << again.error().message();
    EXPECT_EQ(again->after, nested.after);
    EXPECT_EQ(encode_payload(nested), bytes);
}

// Each thread has its own archives and HMAC context: threads encoding and decoding at once,
// under different keys, all get exactly the bytes one thread alone gets.
TEST(ArchiveReuseTest, ThreadsDoNotShareArchivesOrKeys) {
    const std::vector<Envelope> messages = every_message();
    const std::string* keys[] = {nullptr, &kKey, &kOtherKey};
    std::vector<std::string> expected;
    for (const std::string* key : keys) {
        for (const Envelope& e : messages)
            expected.push_back(encode_envelope(e, key, kGoldenStamp));
    }
    constexpr int kThreads = 4;
    constexpr int kRounds = 200;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < kRounds; ++round) {
                for (std::size_t k = 0; k < std::size(keys); ++k) {
                    const std::string* key = keys[(k + static_cast<std::size_t>(t)) % 3];
                    const std::size_t key_index =
                        static_cast<std::size_t>(key == nullptr ? 0 : (key == &kKey ? 1 : 2));
                    for (std::size_t i = 0; i < messages.size(); ++i) {
                        const std::string frame = encode_envelope(messages[i], key, kGoldenStamp);
                        if (frame != expected[key_index * messages.size() + i]) ++failures;
                        auto back = decode_envelope(frame, kUdpFrameLimits, key);
                        if (!back || back->rpc_id != messages[i].rpc_id) ++failures;
                    }
                }
            }
        });
    }
    for (std::thread& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
}

// The thread's HMAC context is keyed once per key: changing keys on one thread, back and forth,
// gives the tags OpenSSL's one-shot HMAC() gives.
TEST(MacTest, TagsStayRightWhenKeysChangeOnOneThread) {
    const std::string long_key(kClusterKeyBytesMax, 'k');
    const std::string copy_of_key = kKey;  // same bytes, another string
    const std::string* keys[] = {&kKey, &kOtherKey, &kKey, &long_key, &copy_of_key, &kOtherKey};
    for (int round = 0; round < 3; ++round) {
        for (const std::string* key : keys) {
            const std::string payload(static_cast<std::size_t>(round) * 100, 'p');
            const std::string frame = encode_frame(40, payload, key, kGoldenStamp);
            const std::size_t covered = frame.size() - kMacTagBytes;
            unsigned char tag[kMacTagBytes];
            unsigned int tag_bytes = 0;
            HMAC(EVP_sha256(), key->data(), static_cast<int>(key->size()),
                 reinterpret_cast<const unsigned char*>(frame.data()), covered, tag, &tag_bytes);
            ASSERT_EQ(tag_bytes, kMacTagBytes);
            EXPECT_EQ(to_hex(frame.substr(covered)),
                      to_hex(std::string_view(reinterpret_cast<const char*>(tag), kMacTagBytes)));
            EXPECT_TRUE(decode_frame(frame, kUdpFrameLimits, key));
            const std::string* other = key == &kOtherKey ? &kKey : &kOtherKey;
            EXPECT_EQ(decode_frame(frame, kUdpFrameLimits, other).code(), Errc::unauthenticated);
        }
    }
}

// --- FrameReader -------------------------------------------------------------------------------

struct Drained {
    std::vector<std::pair<std::uint8_t, std::string>> frames;
    std::optional<Error> error;
};

void drain(FrameReader& reader, Drained& out) {
    for (;;) {
        auto r = reader.next();
        if (!r) {
            out.error = r.error();
            return;
        }
        if (!*r) return;
        out.frames.emplace_back((*r)->type, std::string((*r)->payload));
    }
}

std::vector<std::pair<std::uint8_t, std::string>> sample_frames() {
    return {{1, ""}, {2, "x"}, {33, std::string(300, 'q')}, {4, "last"}};
}

std::string stream_of(const std::string* key) {
    std::string stream;
    for (const auto& [type, payload] : sample_frames()) stream += encode_frame(type, payload, key);
    return stream;
}

TEST(FrameReaderTest, ReassemblesFramesSplitAtEveryByteBoundary) {
    for (const std::string* key : {static_cast<const std::string*>(nullptr), &kKey}) {
        const std::string stream = stream_of(key);
        for (std::size_t split = 0; split <= stream.size(); ++split) {
            FrameReader reader(kTcpFrameLimits, key);
            Drained got;
            reader.append(std::string_view(stream).substr(0, split));
            drain(reader, got);
            reader.append(std::string_view(stream).substr(split));
            drain(reader, got);
            ASSERT_FALSE(got.error) << "split " << split << ": " << got.error->message();
            ASSERT_EQ(got.frames, sample_frames()) << "split " << split;
            EXPECT_EQ(reader.buffered_bytes(), 0u);
        }
    }
}

TEST(FrameReaderTest, ReassemblesOneByteAtATime) {
    const std::string stream = stream_of(&kKey) + stream_of(&kKey);
    FrameReader reader(kTcpFrameLimits, &kKey);
    Drained got;
    for (char c : stream) {
        reader.append(std::string_view(&c, 1));
        drain(reader, got);
        ASSERT_FALSE(got.error);
    }
    EXPECT_EQ(got.frames.size(), 2 * sample_frames().size());
    EXPECT_EQ(reader.buffered_bytes(), 0u);
}

TEST(FrameReaderTest, ManyFramesInOneAppend) {
    std::string stream;
    for (int i = 0; i < 1000; ++i) stream += encode_frame(5, std::to_string(i), nullptr);
    FrameReader reader(kUdpFrameLimits, nullptr);
    reader.append(stream);
    Drained got;
    drain(reader, got);
    ASSERT_FALSE(got.error);
    ASSERT_EQ(got.frames.size(), 1000u);
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(got.frames[i].second, std::to_string(i));
}

TEST(FrameReaderTest, BadHeaderIsReportedBeforeThePayloadArrives) {
    std::string frame = encode_frame(5, std::string(1000, 'p'), nullptr);
    frame[0] = 'X';
    FrameReader reader(kTcpFrameLimits, nullptr);
    reader.append(std::string_view(frame).substr(0, kFrameHeaderBytes - 1));
    auto partial = reader.next();
    ASSERT_TRUE(partial);
    EXPECT_FALSE(*partial);
    reader.append(std::string_view(frame).substr(kFrameHeaderBytes - 1, 1));
    auto r = reader.next();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::malformed_message);
    // Sticky: more bytes do not revive the stream.
    reader.append(std::string_view(frame).substr(kFrameHeaderBytes));
    EXPECT_EQ(reader.next().code(), Errc::malformed_message);
}

TEST(FrameReaderTest, OversizedLengthIsReportedFromTheHeaderAlone) {
    std::string header = encode_frame(5, "", nullptr);
    header[8] = '\x7f';  // declares ~2 GiB
    FrameReader reader(kTcpFrameLimits, nullptr);
    reader.append(header);
    auto r = reader.next();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), Errc::too_large);
}

TEST(FrameReaderTest, MacFailureStopsTheStream) {
    std::string stream = stream_of(&kKey);
    stream[kFrameHeaderBytes + kFrameAuthBytes + kFrameHeaderBytes] ^= 1;  // 2nd frame's payload
    FrameReader reader(kTcpFrameLimits, &kKey);
    reader.append(stream);
    Drained got;
    drain(reader, got);
    ASSERT_TRUE(got.error);
    EXPECT_EQ(got.error->code(), Errc::unauthenticated);
    EXPECT_EQ(got.frames.size(), 1u);
}

TEST(FrameReaderTest, StreamOfEnvelopesDecodes) {
    std::string stream;
    const std::vector<Envelope> all = every_message();
    for (const Envelope& e : all) stream += encode_envelope(e, &kKey);
    FrameReader reader(kTcpFrameLimits, &kKey);
    std::size_t decoded = 0;
    for (std::size_t at = 0; at < stream.size(); at += 37) {
        reader.append(std::string_view(stream).substr(at, 37));
        for (;;) {
            auto r = reader.next();
            ASSERT_TRUE(r) << r.error().message();
            if (!*r) break;
            // Re-frame the view's payload to decode it as a datagram would be.
            const std::string frame = encode_frame((*r)->type, (*r)->payload, &kKey);
            auto e = decode_envelope(frame, kTcpFrameLimits, &kKey);
            ASSERT_TRUE(e) << e.error().message();
            expect_same(all[decoded], *e);
            ++decoded;
        }
    }
    EXPECT_EQ(decoded, all.size());
}

// --- replay guard ------------------------------------------------------------------------------

using WallClock = ReplayGuard::Clock;
using namespace std::chrono_literals;

// A fixed "now" so that every test sees the same clock.
const WallClock::time_point kNow = WallClock::time_point(1'717'000'000'000ms);

std::uint64_t ms_of(WallClock::time_point t) {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

FrameStamp stamp_at(WallClock::time_point t, std::uint64_t sequence, std::uint64_t sender = 42) {
    return FrameStamp{ms_of(t), sender, sequence};
}

TEST(ReplayGuardTest, FreshStampPassesOnceAndItsReplayIsRejected) {
    ReplayGuard guard;
    const FrameStamp s = stamp_at(kNow, 1);
    EXPECT_TRUE(guard.admit(s, kNow));
    auto again = guard.admit(s, kNow + 5ms);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.code(), Errc::unauthenticated);
    EXPECT_NE(again.error().detail().find("replayed"), std::string::npos);
    EXPECT_EQ(guard.stats().admitted, 1u);
    EXPECT_EQ(guard.stats().duplicates, 1u);
    // Same time, another sequence or sender: a different frame.
    EXPECT_TRUE(guard.admit(stamp_at(kNow, 2), kNow));
    EXPECT_TRUE(guard.admit(stamp_at(kNow, 1, 43), kNow));
}

TEST(ReplayGuardTest, OldStampIsRejected) {
    ReplayGuard guard;                                        // window 30 s
    EXPECT_TRUE(guard.admit(stamp_at(kNow - 30s, 1), kNow));  // the edge is inside
    auto old = guard.admit(stamp_at(kNow - 30s - 1ms, 2), kNow);
    ASSERT_FALSE(old);
    EXPECT_EQ(old.code(), Errc::unauthenticated);
    EXPECT_NE(old.error().detail().find("behind"), std::string::npos) << old.error().detail();
    EXPECT_FALSE(guard.admit(stamp_at(kNow - 24h, 3), kNow));
    EXPECT_FALSE(guard.admit(FrameStamp{0, 42, 4}, kNow));
    EXPECT_EQ(guard.stats().too_old, 3u);
}

TEST(ReplayGuardTest, StampFromTheFutureBeyondTheWindowIsRejected) {
    ReplayGuard guard;
    EXPECT_TRUE(guard.admit(stamp_at(kNow + 30s, 1), kNow));
    auto ahead = guard.admit(stamp_at(kNow + 30s + 1ms, 2), kNow);
    ASSERT_FALSE(ahead);
    EXPECT_EQ(ahead.code(), Errc::unauthenticated);
    EXPECT_NE(ahead.error().detail().find("ahead"), std::string::npos) << ahead.error().detail();
    EXPECT_FALSE(guard.admit(FrameStamp{~std::uint64_t{0}, 42, 3}, kNow));
    EXPECT_EQ(guard.stats().too_new, 2u);
}

TEST(ReplayGuardTest, WindowIsConfigurable) {
    ReplayGuard guard(ReplayGuardOptions{2s, 16});
    EXPECT_TRUE(guard.admit(stamp_at(kNow - 2s, 1), kNow));
    EXPECT_FALSE(guard.admit(stamp_at(kNow - 3s, 2), kNow));
    EXPECT_FALSE(guard.admit(stamp_at(kNow + 3s, 3), kNow));
    EXPECT_TRUE(guard.check_window(stamp_at(kNow + 1s, 4), kNow));
    EXPECT_FALSE(guard.check_window(stamp_at(kNow + 3s, 4), kNow));
    EXPECT_EQ(guard.size(), 1u);  // check_window remembers nothing
}

TEST(ReplayGuardTest, StampsLeaveWithTheWindowButTheirReplaysStayRejected) {
    ReplayGuard guard;
    const FrameStamp s = stamp_at(kNow, 1);
    ASSERT_TRUE(guard.admit(s, kNow));
    // 31 s later the stamp is out of the window: forgotten on the next admit.
    ASSERT_TRUE(guard.admit(stamp_at(kNow + 31s, 2), kNow + 31s));
    EXPECT_EQ(guard.size(), 1u);
    EXPECT_FALSE(guard.admit(s, kNow + 31s));
    // Even if the wall clock jumps back, the horizon keeps the forgotten stamp out.
    auto back = guard.admit(s, kNow);
    ASSERT_FALSE(back);
    EXPECT_EQ(guard.stats().forgotten, 1u) << back.error().detail();
}

TEST(ReplayGuardTest, FullCacheForgetsTheOldestAndRaisesTheHorizon) {
    ReplayGuard guard(ReplayGuardOptions{30s, 4});
    for (std::uint64_t i = 0; i < 6; ++i) {
        ASSERT_TRUE(guard.admit(stamp_at(kNow + std::chrono::milliseconds(i), i), kNow));
        EXPECT_LE(guard.size(), 4u);
    }
    EXPECT_EQ(guard.horizon_ms(), static_cast<std::int64_t>(ms_of(kNow + 1ms)));
    for (std::uint64_t i = 0; i < 6; ++i) {
        EXPECT_FALSE(guard.admit(stamp_at(kNow + std::chrono::milliseconds(i), i), kNow)) << i;
    }
    EXPECT_EQ(guard.stats().forgotten, 2u);
    EXPECT_EQ(guard.stats().duplicates, 4u);
    // The price of the bound: a genuine frame stamped before the horizon is refused too.
    EXPECT_FALSE(guard.admit(stamp_at(kNow, 99, 7), kNow));
    EXPECT_TRUE(guard.admit(stamp_at(kNow + 10ms, 99, 7), kNow));
}

// A million distinct frames at ~20000 a second (far more than one window's worth fits in the
// cache): every one is admitted, the cache never exceeds its bound, and replays of any of
// them — remembered or forgotten — are rejected.
TEST(ReplayGuardTest, DuplicateCacheStaysBoundedUnderAMillionDistinctFrames) {
    ReplayGuard guard;
    const std::size_t bound = guard.options().entries_max;
    constexpr std::uint64_t kFrames = 1'000'000;
    std::size_t largest = 0;
    const auto time_of = [](std::uint64_t i) { return kNow + std::chrono::milliseconds(i / 20); };
    for (std::uint64_t i = 0; i < kFrames; ++i) {
        const auto now = time_of(i);
        ASSERT_TRUE(guard.admit(stamp_at(now, i, i % 7), now)) << i;
        largest = std::max(largest, guard.size());
    }
    EXPECT_LE(largest, bound);
    EXPECT_EQ(guard.size(), bound);
    EXPECT_EQ(guard.stats().admitted, kFrames);
    const auto end = time_of(kFrames - 1);
    std::mt19937_64 rng(11);
    for (int k = 0; k < 1000; ++k) {
        const std::uint64_t i = rng() % kFrames;
        EXPECT_FALSE(guard.admit(stamp_at(time_of(i), i, i % 7), end)) << i;
    }
    EXPECT_LE(guard.size(), bound);
}

// --- keyed streams (FrameReader with a ReplayGuard) --------------------------------------------

// A keyed stream as its connecting end sends it: stream-open frame, then `frames` frames.
std::string keyed_stream(int frames, std::uint64_t first_sequence = 100,
                         WallClock::time_point at = kNow, std::uint64_t sender = 42) {
    std::string stream =
        encode_stream_open(StreamRole::connector, kKey, stamp_at(at, first_sequence, sender));
    for (int i = 1; i <= frames; ++i) {
        stream +=
            encode_frame(40, "frame " + std::to_string(i), &kKey,
                         stamp_at(at, first_sequence + static_cast<std::uint64_t>(i), sender));
    }
    return stream;
}

// Drains `reader` at kNow.
void drain_at(FrameReader& reader, Drained& out, WallClock::time_point now = kNow) {
    for (;;) {
        auto r = reader.next(now);
        if (!r) {
            out.error = r.error();
            return;
        }
        if (!*r) return;
        out.frames.emplace_back((*r)->type, std::string((*r)->payload));
    }
}

TEST(KeyedStreamTest, OpenFrameIsConsumedAndFramesFollow) {
    ReplayGuard guard;
    const std::string stream = keyed_stream(1000);
    FrameReader reader(kTcpFrameLimits, &kKey, StreamRole::connector, guard);
    reader.append(stream);
    Drained got;
    drain_at(reader, got);
    ASSERT_FALSE(got.error) << got.error->message();
    ASSERT_EQ(got.frames.size(), 1000u);
    EXPECT_EQ(got.frames.front().second, "frame 1");
    EXPECT_EQ(reader.buffered_bytes(), 0u);
    // One guard entry for the whole stream.
    EXPECT_EQ(guard.size(), 1u);
    EXPECT_EQ(guard.stats().admitted, 1001u);
}

TEST(KeyedStreamTest, ReplayedStreamIsRejectedAtItsFirstFrame) {
    ReplayGuard guard;
    const std::string stream = keyed_stream(3);
    FrameReader first(kTcpFrameLimits, &kKey, StreamRole::connector, guard);
    first.append(stream);
    Drained a;
    drain_at(first, a);
    ASSERT_FALSE(a.error);
    FrameReader replay(kTcpFrameLimits, &kKey, StreamRole::connector, guard);
    replay.append(stream);
    Drained b;
    drain_at(replay, b, kNow + 2s);
    ASSERT_TRUE(b.error);
    EXPECT_EQ(b.error->code(), Errc::unauthenticated);
    EXPECT_TRUE(replay.replay_rejected());
    EXPECT_TRUE(b.frames.empty());
    // And it sticks.
    EXPECT_EQ(replay.next(kNow).code(), Errc::unauthenticated);
}

TEST(KeyedStreamTest, FramesCutFromAStreamCannotStartOne) {
    ReplayGuard guard;
    const std::string stream = keyed_stream(3);
    const std::size_t open_bytes = kFrameHeaderBytes + 1 + kFrameAuthBytes;
    FrameReader reader(kTcpFrameLimits, &kKey, StreamRole::connector, guard);
    reader.append(std::string_view(stream).substr(open_bytes));
    Drained got;
    drain_at(reader, got);
    ASSERT_TRUE(got.error);
    EXPECT_EQ(got.error->code(), Errc::unauthenticated);
    EXPECT_TRUE(reader.replay_rejected());
    EXPECT_TRUE(got.frames.empty());
}

TEST(KeyedStreamTest, OpenFrameOfTheWrongRoleIsRejected) {
    ReplayGuard guard;
    // A node's own stream-open frame reflected back at it.
    FrameReader reader(kTcpFrameLimits, &kKey, StreamRole::connector, guard);
    reader.append(encode_stream_open(StreamRole::acceptor, kKey, stamp_at(kNow, 1)));
    Drained got;
    drain_at(reader, got);
    ASSERT_TRUE(got.error);
    EXPECT_TRUE(reader.replay_rejected());
}

TEST(KeyedStreamTest, OrderSenderAndFreshnessAreCheckedOnEveryFrame) {
    struct Case {
        const char* what;
        FrameStamp stamp;
    };
    for (const Case& c :
         {Case{"repeated sequence", stamp_at(kNow, 101)},
          Case{"older sequence", stamp_at(kNow, 50)},
          Case{"another sender", stamp_at(kNow, 200, 43)}, Case{"stale", stamp_at(kNow - 31s, 200)},
          Case{"from the future", stamp_at(kNow + 31s, 200)}}) {
        ReplayGuard guard;
        FrameReader reader(kTcpFrameLimits, &kKey, StreamRole::connector, guard);
        reader.append(keyed_stream(1));  // open at 100, one frame at 101
        reader.append(encode_frame(40, "bad", &kKey, c.stamp));
        Drained got;
        drain_at(reader, got);
        ASSERT_TRUE(got.error) << c.what;
        EXPECT_EQ(got.error->code(), Errc::unauthenticated) << c.what;
        EXPECT_TRUE(reader.replay_rejected()) << c.what;
        EXPECT_EQ(got.frames.size(), 1u) << c.what;
    }
    // A second stream-open frame mid-stream is refused too.
    ReplayGuard guard;
    FrameReader reader(kTcpFrameLimits, &kKey, StreamRole::connector, guard);
    reader.append(keyed_stream(1));
    reader.append(encode_stream_open(StreamRole::connector, kKey, stamp_at(kNow, 300)));
    Drained got;
    drain_at(reader, got);
    ASSERT_TRUE(got.error);
    EXPECT_TRUE(reader.replay_rejected());
}

TEST(KeyedStreamTest, BadTagIsNotAReplay) {
    ReplayGuard guard;
    FrameReader reader(kTcpFrameLimits, &kOtherKey, StreamRole::connector, guard);
    reader.append(keyed_stream(1));
    Drained got;
    drain_at(reader, got);
    ASSERT_TRUE(got.error);
    EXPECT_EQ(got.error->code(), Errc::unauthenticated);
    EXPECT_FALSE(reader.replay_rejected());
    EXPECT_EQ(guard.size(), 0u);
}

TEST(KeyedStreamTest, KeylessStreamsCheckNothing) {
    ReplayGuard guard;
    FrameReader reader(kTcpFrameLimits, nullptr, StreamRole::connector, guard);
    reader.append(stream_of(nullptr));
    Drained got;
    drain_at(reader, got);
    ASSERT_FALSE(got.error);
    EXPECT_EQ(got.frames, sample_frames());
    EXPECT_EQ(guard.stats().admitted, 0u);
}

// --- the transport's replay protection, over real sockets on 127.0.0.1 -------------------------

// A keyed Transport on an ephemeral port, its io_context on a thread of its own.
class KeyedTransportTest : public ::testing::Test {
protected:
    // Runs `f` on the io_context's thread and returns its result.
    template <class F>
    auto on_io(F f) {
        std::promise<decltype(f())> result;
        boost::asio::post(io_, [&] { result.set_value(f()); });
        return result.get_future().get();
    }
    void SetUp() override {
        TransportOptions options;
        options.cluster_key = kKey;
        auto opened = Transport::open(io_, HostPort{"127.0.0.1", 0}, options);
        ASSERT_TRUE(opened) << opened.error().message();
        transport_ = std::move(opened).value();
        transport_->start([this](chord::Envelope) { ++envelopes_; },
                          [this](const std::shared_ptr<Connection>& from, const FrameView& frame) {
                              from->send(encode_frame(41, frame.payload, &kKey));
                          });
        work_.emplace(io_.get_executor());
        thread_ = std::thread([this] { io_.run(); });
    }
    void TearDown() override {
        if (transport_) {
            on_io([this] {
                transport_->close();
                return 0;
            });
        }
        work_.reset();
        if (thread_.joinable()) thread_.join();
    }

    TransportStats stats() {
        return on_io([this] { return transport_->stats(); });
    }
    // Waits (up to 5 s) until the transport has received `n` datagrams in all.
    bool received(std::uint64_t n) {
        for (int i = 0; i < 500; ++i) {
            if (stats().datagrams_received >= n) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    sockaddr_in address() const {
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        to.sin_port = htons(transport_->port());
        return to;
    }
    void send_datagram(const std::string& bytes) {
        const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
        const sockaddr_in to = address();
        ASSERT_EQ(::sendto(fd, bytes.data(), bytes.size(), 0,
                           reinterpret_cast<const sockaddr*>(&to), sizeof to),
                  static_cast<ssize_t>(bytes.size()));
        ::close(fd);
    }
    Envelope ping() const {
        Envelope e = envelope(chord::Ping{});
        e.to_address = "127.0.0.1:" + std::to_string(transport_->port());
        return e;
    }

    boost::asio::io_context io_;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
    std::thread thread_;
    std::unique_ptr<Transport> transport_;
    std::atomic<int> envelopes_{0};
};

TEST_F(KeyedTransportTest, ReplayedDatagramIsRejected) {
    const std::string captured = encode_envelope(ping(), &kKey);
    send_datagram(captured);
    ASSERT_TRUE(received(1));
    send_datagram(captured);
    ASSERT_TRUE(received(2));
    EXPECT_EQ(envelopes_.load(), 1);
    const TransportStats s = stats();
    EXPECT_EQ(s.frames_replayed, 1u);
    EXPECT_EQ(s.frames_unauthenticated, 1u);
    EXPECT_EQ(s.frames_dropped, 0u);
}

TEST_F(KeyedTransportTest, StaleAndFutureDatagramsAreRejectedAndFreshOnesPass) {
    const auto now = WallClock::now();
    FrameStamp stale = next_frame_stamp();
    stale.sent_at_ms = ms_of(now - 60s);
    FrameStamp future = next_frame_stamp();
    future.sent_at_ms = ms_of(now + 60s);
    send_datagram(encode_envelope(ping(), &kKey, stale));
    send_datagram(encode_envelope(ping(), &kKey, future));
    send_datagram(encode_envelope(ping(), &kKey));  // fresh
    ASSERT_TRUE(received(3));
    EXPECT_EQ(envelopes_.load(), 1);
    const TransportStats s = stats();
    EXPECT_EQ(s.frames_replayed, 2u);
    EXPECT_EQ(s.frames_unauthenticated, 2u);
    const ReplayGuardStats g = on_io([this] { return transport_->replay_guard().stats(); });
    EXPECT_EQ(g.too_old, 1u);
    EXPECT_EQ(g.too_new, 1u);
    EXPECT_EQ(g.admitted, 1u);
}

TEST_F(KeyedTransportTest, WrongKeyIsUnauthenticatedNotReplayed) {
    send_datagram(encode_envelope(ping(), &kOtherKey));
    send_datagram(encode_envelope(ping(), nullptr));
    ASSERT_TRUE(received(2));
    EXPECT_EQ(envelopes_.load(), 0);
    const TransportStats s = stats();
    EXPECT_EQ(s.frames_unauthenticated, 2u);
    EXPECT_EQ(s.frames_replayed, 0u);
}

// Blocking TCP helpers for the stream tests.
int connect_to(const sockaddr_in& to) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
        ::close(fd);
        return -1;
    }
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return fd;
}

// Reads frames (a keyed stream opened by the acceptor) until `want` arrived, the peer closes
// or 5 s pass.
Drained read_frames(int fd, std::size_t want) {
    ReplayGuard guard;
    FrameReader reader(kTcpFrameLimits, &kKey, StreamRole::acceptor, guard);
    Drained got;
    char buffer[4096];
    while (got.frames.size() < want && !got.error) {
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        reader.append(std::string_view(buffer, static_cast<std::size_t>(n)));
        drain(reader, got);
    }
    return got;
}

TEST_F(KeyedTransportTest, ReplayedTcpStreamIsDropped) {
    // Encoded one after the other: frames must be stamped in the order they are sent.
    std::string recorded = encode_stream_open(StreamRole::connector, kKey);
    recorded += encode_frame(40, "one", &kKey);
    recorded += encode_frame(40, "two", &kKey);
    // The genuine stream: two replies (after the node's own stream-open frame).
    {
        const int fd = connect_to(address());
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::send(fd, recorded.data(), recorded.size(), MSG_NOSIGNAL),
                  static_cast<ssize_t>(recorded.size()));
        const Drained got = read_frames(fd, 2);
        ::close(fd);
        ASSERT_FALSE(got.error) << got.error->message();
        ASSERT_EQ(got.frames.size(), 2u);
        EXPECT_EQ(got.frames[1].second, "two");
    }
    // The same bytes again on a new connection: dropped at the stream-open frame, no reply.
    {
        const int fd = connect_to(address());
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::send(fd, recorded.data(), recorded.size(), MSG_NOSIGNAL),
                  static_cast<ssize_t>(recorded.size()));
        const Drained got = read_frames(fd, 1);  // ends when the node closes the connection
        ::close(fd);
        EXPECT_TRUE(got.frames.empty());
    }
    const TransportStats s = stats();
    EXPECT_EQ(s.tcp_frames_received, 2u);
    EXPECT_EQ(s.frames_replayed, 1u);
    EXPECT_EQ(s.frames_unauthenticated, 1u);
    EXPECT_EQ(s.tcp_connections_dropped, 1u);
}

TEST_F(KeyedTransportTest, RequestClientOpensKeyedStreams) {
    for (int round = 0; round < 3; ++round) {
        auto client =
            RequestClient::connect("127.0.0.1:" + std::to_string(transport_->port()), 2s, kKey);
        ASSERT_TRUE(client) << client.error().message();
        for (int i = 0; i < 10; ++i) {
            const std::string body = "request " + std::to_string(i);
            auto reply = (*client)->call(encode_frame(40, body, &kKey), 2s);
            ASSERT_TRUE(reply) << reply.error().message();
            EXPECT_EQ(reply->type, 41);
            EXPECT_EQ(reply->payload, body);
        }
    }
    EXPECT_EQ(stats().frames_unauthenticated, 0u);
    // 3 streams: one guard entry each, not one per frame.
    EXPECT_EQ(on_io([this] { return transport_->replay_guard().size(); }), 3u);
}

TEST_F(KeyedTransportTest, RequestClientExplainsKeyMismatches) {
    const std::string address = "127.0.0.1:" + std::to_string(transport_->port());
    for (const std::string& key : {std::string(), kOtherKey}) {
        auto client = RequestClient::connect(address, 2s, key);
        ASSERT_TRUE(client) << client.error().message();
        auto reply = (*client)->call(encode_frame(40, "x", (*client)->key()), 2s);
        ASSERT_FALSE(reply);
        EXPECT_EQ(reply.code(), Errc::unauthenticated) << reply.error().message();
        EXPECT_NE(reply.error().message().find("cluster key?"), std::string::npos)
            << reply.error().message();
    }
}

}  // namespace
}  // namespace chordkv::net
