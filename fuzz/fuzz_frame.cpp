// fuzz_frame: the frame layer (net/codec.hpp decode_frame, FrameReader, the MAC policy, the
// stamps and ReplayGuard of net/cluster_key.hpp) and the payload of every frame it accepts,
// decoded as the message its type byte names: a protocol envelope (decode_envelope) or an admin
// / data message (decode_admin<T>).
//
// Input:
//     0  mode    bit 0: a cluster key is configured
//                bit 1: with a key, the harness first re-signs every tagged frame, so mutated
//                       payloads and stamps get past the MAC check (the fuzzer cannot forge
//                       HMACs)
//                bit 2: TCP frame limits (else UDP)
//                bit 3: a TCP byte stream through a FrameReader (else UDP datagrams)
//                bit 4: with a key, the stream is a keyed stream checked by a ReplayGuard
//                       (stream-open frame first); bit 5 picks the peer's role
//     1  chunk   stream: bytes appended per FrameReader::append, 0 = everything at once
//     2  then    stream: the stream's bytes
//                datagrams, until the input ends: i8 clock step in seconds, u16 n, n bytes
//
// Datagrams go through what Transport::on_datagram does: decode_frame, then (keyed) the replay
// guard's admit() at the current clock, then decode_envelope. The clock starts at kNowMs and
// moves by each datagram's step, backwards too. The guard remembers few stamps, so its bound
// and horizon come into play.
//
// Properties checked beyond "no crash, no sanitizer report, no leak":
//   - a frame that decodes re-encodes (encode_frame with its stamp) to exactly its bytes;
//   - decode_envelope(bytes) accepts exactly the frames decode_frame and then
//     decode_envelope(frame) accept;
//   - no stamp the guard admitted is ever admitted again, whatever came after;
//   - FrameReader returns exactly the frames the stream holds, in order (a keyed stream's
//     stream-open frame consumed), its errors stick, a replay rejection is unauthenticated; a
//     keyed stream's frames come from one sender with rising sequence numbers, and the same
//     stream replayed into a new reader with the same guard yields no frame;
//   - every decoded envelope or message re-encodes to a fixed point.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_support.hpp"
#include "fuzz/message_types.hpp"
#include "net/cluster_key.hpp"
#include "net/codec.hpp"

namespace chordkv::fuzz {
namespace {

constexpr std::uint8_t kModeKeyed = 0x01;
constexpr std::uint8_t kModeSign = 0x02;
constexpr std::uint8_t kModeTcp = 0x04;
constexpr std::uint8_t kModeStream = 0x08;
constexpr std::uint8_t kModeGuarded = 0x10;
constexpr std::uint8_t kModeAcceptor = 0x20;

using Clock = net::ReplayGuard::Clock;

// Stamps kept to re-present to the guard; older ones are dropped.
constexpr std::size_t kAdmittedRemembered = 64;

net::ReplayGuardOptions guard_options() {
    net::ReplayGuardOptions options;
    options.window = std::chrono::seconds(30);
    options.entries_max = 8;
    return options;
}

Clock::time_point clock_at(std::int64_t ms) {
    return Clock::time_point(std::chrono::milliseconds(ms));
}

// The size of the frame whose header starts `bytes`, from its declared length and flags; 0 when
// fewer than kFrameHeaderBytes bytes are there. The bytes covered by its tag in `covered`.
std::size_t frame_size(std::string_view bytes, std::size_t& covered) {
    if (bytes.size() < net::kFrameHeaderBytes) return 0;
    std::size_t length = 0;
    for (std::size_t i = 8; i < 12; ++i) {
        length = (length << 8) | static_cast<std::uint8_t>(bytes[i]);
    }
    const auto flags = static_cast<std::uint8_t>(bytes[6]);
    covered = net::kFrameHeaderBytes + length +
              ((flags & net::kFrameFlagStamp) != 0 ? net::kFrameStampBytes : 0);
    return covered + ((flags & net::kFrameFlagMac) != 0 ? net::kMacTagBytes : 0);
}

// Overwrites the tag of every complete tagged frame in `bytes` (walking them by their declared
// sizes) with the right HMAC under `key`.
void sign_frames(std::string& bytes, const std::string& key) {
    std::size_t at = 0;
    for (;;) {
        std::size_t covered = 0;
        const std::size_t size = frame_size(std::string_view(bytes).substr(at), covered);
        if (size == 0 || size > bytes.size() - at) return;
        if (size > covered) {
            unsigned int tag_bytes = 0;
            auto* tag = reinterpret_cast<unsigned char*>(bytes.data() + at + covered);
            HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                 reinterpret_cast<const unsigned char*>(bytes.data() + at), covered, tag,
                 &tag_bytes);
            require(tag_bytes == net::kMacTagBytes, "HMAC-SHA256 gave a tag of the wrong size");
        }
        at += size;
    }
}

std::string reencode(const net::FrameView& frame, const std::string* key) {
    return net::encode_frame(frame.type, frame.payload, key, frame.stamp);
}

// Decodes a frame's payload as whatever its type names; for an envelope, checks the fixed point.
void check_payload(const net::FrameView& frame, const net::FrameLimits& limits,
                   const std::string* key) {
    if (frame.type >= net::kDataPathWireTypeMin) {
        decode_message(frame.type, frame.payload, [](const auto&) {});
        return;
    }
    auto envelope = net::decode_envelope(frame);
    if (!envelope) return;
    const std::string bytes = net::encode_envelope(*envelope, key, frame.stamp);
    auto again = net::decode_envelope(bytes, limits, key);
    require(again.ok(), "a decoded envelope re-encodes to a frame that does not decode");
    require(net::encode_envelope(*again, key, frame.stamp) == bytes,
            "decode/encode of an envelope is not a fixed point");
}

class Datagrams {
public:
    Datagrams(const net::FrameLimits& limits, const std::string* key)
        : limits_(limits), key_(key) {}

    // One datagram received at `now_ms`.
    void receive(std::string_view bytes, std::int64_t now_ms) {
        auto frame = net::decode_frame(bytes, limits_, key_);
        auto envelope = net::decode_envelope(bytes, limits_, key_);
        if (!frame) {
            require(!envelope.ok(), "decode_envelope accepted a frame that decode_frame refuses");
            return;
        }
        require(reencode(*frame, key_) == bytes,
                "a decoded frame does not re-encode to its own bytes");
        require(envelope.ok() == net::decode_envelope(*frame).ok(),
                "decode_envelope of the bytes and of the decoded frame disagree");
        if (key_ != nullptr && !admit(frame->stamp, now_ms)) return;
        check_payload(*frame, limits_, key_);
    }

private:
    bool admit(const net::FrameStamp& stamp, std::int64_t now_ms) {
        const Clock::time_point now = clock_at(now_ms);
        const bool admitted = guard_.admit(stamp, now).ok();
        require(guard_.size() <= guard_.options().entries_max,
                "the replay guard holds more stamps than entries_max");
        for (const net::FrameStamp& old : admitted_) {
            require(!guard_.admit(old, now).ok(), "the replay guard admitted a stamp twice");
        }
        if (admitted) {
            require(!guard_.admit(stamp, now).ok(), "the replay guard admitted a stamp twice");
            if (admitted_.size() == kAdmittedRemembered) admitted_.erase(admitted_.begin());
            admitted_.push_back(stamp);
        }
        return admitted;
    }

    net::FrameLimits limits_;
    const std::string* key_;
    net::ReplayGuard guard_{guard_options()};
    std::vector<net::FrameStamp> admitted_;  // oldest first
};

// Appends `bytes` to `reader` in chunks and checks every frame it returns. Returns how many
// frames it returned.
std::size_t read_stream(net::FrameReader& reader, std::string_view bytes, std::size_t chunk,
                        const net::FrameLimits& limits, const std::string* key, bool guarded,
                        Clock::time_point now) {
    std::size_t consumed = 0;  // stream bytes returned (or consumed) as frames so far
    std::size_t frames = 0;
    std::optional<net::FrameStamp> previous;
    for (std::size_t at = 0; at < bytes.size();) {
        const std::string_view piece = bytes.substr(at, chunk == 0 ? bytes.size() : chunk);
        at += piece.size();
        reader.append(piece);
        for (;;) {
            auto next = reader.next(now);
            if (!next) {
                require(!reader.replay_rejected() || next.code() == Errc::unauthenticated,
                        "a replay rejection that is not unauthenticated");
                auto again = reader.next(now);
                require(!again && again.code() == next.code(), "a FrameReader error did not stick");
                return frames;
            }
            if (!*next) break;
            const net::FrameView& frame = **next;
            const std::string encoded = reencode(frame, key);
            if (guarded && frames == 0) {
                // The reader consumed the stream-open frame before this one.
                std::size_t covered = 0;
                consumed += frame_size(bytes, covered);
            }
            require(bytes.substr(consumed, encoded.size()) == encoded,
                    "FrameReader returned a frame that is not the next one in the stream");
            consumed += encoded.size();
            ++frames;
            if (guarded) {
                require(frame.type != net::kStreamOpenType,
                        "a keyed stream returned a stream-open frame");
                if (previous) {
                    require(frame.stamp.sender == previous->sender &&
                                frame.stamp.sequence > previous->sequence,
                            "a keyed stream passed a frame from another sender or out of order");
                }
                previous = frame.stamp;
            }
            check_payload(frame, limits, key);
        }
        if (!guarded || frames > 0) {
            require(reader.buffered_bytes() == at - consumed,
                    "FrameReader buffers another number of bytes than it has not returned");
        }
    }
    return frames;
}

void check_stream(std::string_view bytes, std::size_t chunk, const net::FrameLimits& limits,
                  const std::string* key, std::optional<net::StreamRole> guarded_role) {
    const Clock::time_point now = clock_at(kNowMs);
    if (!guarded_role || key == nullptr) {
        net::FrameReader reader(limits, key);
        read_stream(reader, bytes, chunk, limits, key, false, now);
        return;
    }
    net::ReplayGuard guard(guard_options());
    net::FrameReader reader(limits, key, *guarded_role, guard);
    const std::size_t frames = read_stream(reader, bytes, chunk, limits, key, true, now);
    if (frames == 0) return;
    // The same stream again, as an attacker who recorded it would send it.
    net::FrameReader replay(limits, key, *guarded_role, guard);
    replay.append(bytes);
    auto first = replay.next(now);
    require(!first.ok(), "a replayed keyed stream passed its stream-open frame");
}

}  // namespace
}  // namespace chordkv::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace chordkv;
    fuzz::ByteReader in(data, size);
    const std::uint8_t mode = in.u8();
    const std::size_t chunk = in.u8();
    const std::string* key = (mode & fuzz::kModeKeyed) != 0 ? &fuzz::cluster_key() : nullptr;
    const bool sign = key != nullptr && (mode & fuzz::kModeSign) != 0;
    const net::FrameLimits& limits =
        (mode & fuzz::kModeTcp) != 0 ? net::kTcpFrameLimits : net::kUdpFrameLimits;
    if ((mode & fuzz::kModeStream) != 0) {
        std::string bytes(in.rest());
        if (sign) fuzz::sign_frames(bytes, *key);
        std::optional<net::StreamRole> role;
        if ((mode & fuzz::kModeGuarded) != 0) {
            role = (mode & fuzz::kModeAcceptor) != 0 ? net::StreamRole::acceptor
                                                     : net::StreamRole::connector;
        }
        fuzz::check_stream(bytes, chunk, limits, key, role);
        return 0;
    }
    fuzz::Datagrams datagrams(limits, key);
    std::int64_t now_ms = fuzz::kNowMs;
    while (!in.empty()) {
        now_ms += 1000 * static_cast<std::int8_t>(in.u8());
        std::string bytes(in.bytes(in.u16()));
        if (sign) fuzz::sign_frames(bytes, *key);
        datagrams.receive(bytes, now_ms);
    }
    return 0;
}
