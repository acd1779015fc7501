// The wire codec: frames (shared by UDP datagrams, TCP streams and data-path messages) and the
// encoding of the protocol's envelopes inside them.
//
// Frame layout (all offsets in bytes; the header is kFrameHeaderBytes long):
//
//     0  magic            4   "CKVF"
//     4  format version   1   kFrameVersion (1)
//     5  message type     1   WireType for protocol messages; 32 and up: data path
//     6  flags            1   bit 0 = kFrameFlagMac: a tag follows the payload; others zero
//     7  reserved         1   zero
//     8  payload length   4   u32, big-endian
//    12  payload          n   Boost binary archive (net/serialization.hpp)
//  12+n  tag             32   HMAC-SHA256(key, header + payload), only when flag bit 0 is set
//
// Decoding checks, in this order and before a single payload byte is deserialized: magic,
// version, reserved byte and unknown flags (malformed_message); declared length against the
// limit (too_large); declared length against the bytes present (malformed_message); the tag
// (unauthenticated).
//
// MAC policy. A node configured with a cluster key accepts only frames whose tag verifies: a
// missing tag or a wrong one is `unauthenticated`. A node WITHOUT a key rejects a frame that
// carries a tag, also as `unauthenticated`: it cannot check the tag, and a keyless node that
// strays into a keyed cluster (or the reverse) must fail loudly on every frame rather than half
// work. So keyed and keyless nodes never talk to each other.
//
// Keys are passed as `const std::string*`: nullptr = no key. A key must not be empty.
// All functions here are pure and may be called from any thread; a FrameReader belongs to one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "chord/messages.hpp"
#include "chord/result.hpp"
#include "net/serialization.hpp"

namespace chordkv::net {

// --- frame layer -------------------------------------------------------------------------------

inline constexpr char kFrameMagic[4] = {'C', 'K', 'V', 'F'};
inline constexpr std::uint8_t kFrameVersion = 1;
inline constexpr std::uint8_t kFrameFlagMac = 0x01;
inline constexpr std::size_t kFrameHeaderBytes = 12;
inline constexpr std::size_t kMacTagBytes = 32;  // HMAC-SHA256

// The largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP); a datagram frame must fit in it.
inline constexpr std::size_t kUdpDatagramBytesMax = 65507;
// Largest frame payload that still fits one datagram with header and tag.
inline constexpr std::size_t kUdpPayloadBytesMax =
    kUdpDatagramBytesMax - kFrameHeaderBytes - kMacTagBytes;
// Largest frame payload on TCP: a 16 MiB value, a 64 KiB key and 64 KiB for the envelope.
inline constexpr std::size_t kTcpPayloadBytesMax = (16u << 20) + (64u << 10) + (64u << 10);

struct FrameLimits {
    // Largest payload length a frame may declare; a larger one is too_large. At most 2^32 - 1.
    std::size_t payload_bytes_max = kUdpPayloadBytesMax;
};
inline constexpr FrameLimits kUdpFrameLimits{kUdpPayloadBytesMax};
inline constexpr FrameLimits kTcpFrameLimits{kTcpPayloadBytesMax};

// A decoded frame. `payload` points into the bytes it was decoded from.
struct FrameView {
    std::uint8_t type = 0;
    std::uint8_t flags = 0;
    std::string_view payload;
};

// A complete frame around `payload`, tagged when `key` is non-null.
// Precondition: payload.size() <= 2^32 - 1 (asserted). Throws only std::bad_alloc.
std::string encode_frame(std::uint8_t type, std::string_view payload, const std::string* key);

// Decodes `bytes`, which must be exactly one frame (a datagram).
// Errors: malformed_message (bad magic, version, reserved byte or flags; truncated; trailing
// bytes), too_large (declared payload over limits.payload_bytes_max), unauthenticated (see the
// MAC policy above). Never throws.
Result<FrameView> decode_frame(std::string_view bytes, const FrameLimits& limits,
                               const std::string* key) noexcept;

// Reassembles frames from a byte stream (TCP).
//
//     reader.append(chunk);
//     for (;;) {
//         auto r = reader.next();
//         if (!r) { drop the connection: r.error(); }
//         if (!*r) break;                 // need more bytes
//         handle(**r);                    // a FrameView into the reader's buffer
//     }
//
// A bad header or an over-limit length is reported as soon as the 12 header bytes are in,
// before the payload arrives. Errors are the same as decode_frame's and sticky: after one,
// next() keeps returning it. Views returned by next() stay valid until the next append().
// Buffers at most one incomplete frame plus whatever the caller appends between next() calls;
// consumed bytes are discarded in amortised O(1) per byte.
class FrameReader {
public:
    // `key` (nullptr = no key) must outlive the reader.
    FrameReader(const FrameLimits& limits, const std::string* key);

    // Adds bytes received from the stream. Throws only std::bad_alloc.
    void append(std::string_view bytes);
    // The next complete frame, nullopt when more bytes are needed, or the stream's error.
    Result<std::optional<FrameView>> next() noexcept;
    // Bytes received but not yet returned as frames.
    std::size_t buffered_bytes() const noexcept { return buffer_.size() - consumed_; }

private:
    FrameLimits limits_;
    const std::string* key_;
    std::string buffer_;
    std::size_t consumed_ = 0;
    std::optional<Error> error_;
};

// --- protocol messages -------------------------------------------------------------------------

// Frame type numbers of the protocol messages. Fixed forever: never renumber, only add.
// Types from kDataPathWireTypeMin up belong to the data path.
enum class WireType : std::uint8_t {
    ping = 1,
    pong = 2,
    get_neighbors = 3,
    neighbors = 4,
    find_next = 5,
    find_next_reply = 6,
    notify = 7,
    leave = 8,
    leave_ack = 9,
};
inline constexpr std::uint8_t kDataPathWireTypeMin = 32;

// Semantic bounds checked on every decoded envelope.
inline constexpr std::size_t kAddressBytesMax = 256;  // from/to addresses and peer addresses
inline constexpr std::size_t kPeerListMax = 64;       // successor lists and lookup candidates

WireType wire_type(const chord::Message& body) noexcept;

// A complete frame carrying `envelope`; its type byte is wire_type(envelope.body). The payload
// is the archive of from.id, from.address, to_address, to_id, rpc_id, reply, then the body's
// fields. The caller keeps within the bounds above and the transport's FrameLimits (the peer
// rejects the frame otherwise). Throws only std::bad_alloc.
std::string encode_envelope(const chord::Envelope& envelope, const std::string* key);

// Decodes one frame (decode_frame), then its payload as the envelope of the message its type
// byte names. Errors: decode_frame's; malformed_message for an unknown type, an archive error, a
// length that exceeds the bytes left, trailing bytes, an address over kAddressBytesMax or a peer
// list over kPeerListMax. Never throws.
Result<chord::Envelope> decode_envelope(std::string_view frame_bytes, const FrameLimits& limits,
                                        const std::string* key) noexcept;

namespace detail {
// Appends a frame header with a zero length to `out`; returns the header's offset.
std::size_t begin_frame(std::string& out, std::uint8_t type, bool tagged);
// Fills in the length of the frame begun at `offset` and, when `key` is set, appends its tag.
void finish_frame(std::string& out, std::size_t offset, const std::string* key);
}  // namespace detail

// The generic piece for other message families (the data path): a complete frame of `type`
// whose payload is encode_payload(body) (net/serialization.hpp), built without an extra copy.
// Decode with decode_frame / FrameReader, then decode_payload<T>(frame.payload).
// Throws only std::bad_alloc.
template <class T>
std::string encode_message_frame(std::uint8_t type, const T& body, const std::string* key) {
    std::string out;
    const std::size_t offset = detail::begin_frame(out, type, key != nullptr);
    append_payload(out, body);
    detail::finish_frame(out, offset, key);
    return out;
}

}  // namespace chordkv::net
