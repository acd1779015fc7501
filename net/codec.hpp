// The wire codec: frames (shared by UDP datagrams, TCP streams and data-path messages) and the
// encoding of the protocol's envelopes inside them.
//
// Frame layout (all offsets in bytes; the header is kFrameHeaderBytes long):
//
//     0  magic            4   "CKVF"
//     4  format version   1   kFrameVersion (1)
//     5  message type     1   WireType for protocol messages; 32 and up: data path;
//                             kStreamOpenType (31): opens a keyed TCP stream (below)
//     6  flags            1   bit 0 = kFrameFlagMac: a tag ends the frame;
//                             bit 1 = kFrameFlagStamp: a stamp follows the payload;
//                             others zero. A frame sent under a key has both (0x03), one
//                             without a key neither; bit 1 without bit 0 is malformed.
//     7  reserved         1   zero
//     8  payload length   4   u32, big-endian
//    12  payload          n   Boost binary archive (net/serialization.hpp)
//  12+n  stamp           24   only with flag bit 1 (net/cluster_key.hpp FrameStamp):
//                               sent_at_ms  u64 big-endian, sender's wall clock, ms since epoch
//                               sender      u64 big-endian, random per sender process
//                               sequence    u64 big-endian, the sender's frame counter
//  36+n  tag             32   only with flag bit 0:
//                             HMAC-SHA256(key, header + payload + stamp)
//
// A keyless frame is thus header + payload, byte for byte the format before stamps existed;
// a keyed one adds kFrameAuthBytes (56). The payload always starts at kFrameHeaderBytes.
//
// Decoding checks, in this order and before a single payload byte is deserialized: magic,
// version, reserved byte and flags (malformed_message); declared length against the limit
// (too_large); declared length against the bytes present (malformed_message); the tag
// (unauthenticated). The stamp's freshness is checked by the receiver after the tag (a
// ReplayGuard for datagrams, the FrameReader for TCP streams), also before deserializing.
//
// MAC policy. A node configured with a cluster key accepts only frames whose tag verifies and
// that carry a stamp: a missing tag, a wrong one or a tag without a stamp (a chordkv from
// before stamps) is `unauthenticated`. A node WITHOUT a key rejects a frame that carries a
// tag, also as `unauthenticated`: it cannot check the tag, and a keyless node that strays into
// a keyed cluster (or the reverse) must fail loudly on every frame rather than half work. So
// keyed and keyless nodes never talk to each other.
//
// Keyed TCP streams. Each direction of a keyed TCP connection starts with a stream-open frame
// (type kStreamOpenType, payload one byte: the sender's StreamRole), stamped like any frame.
// The receiving FrameReader admits that stamp in its ReplayGuard, then accepts only frames
// from the same sender with increasing sequence numbers and stamps inside the window, and
// consumes the stream-open frame itself. So replaying a recorded stream fails at its first
// frame, and frames cut from the middle of a stream cannot open a new one; the guard holds one
// entry per stream, not one per frame. Senders: Transport's Connection, PeerPool and
// RequestClient send it first; frames must go out on a connection in the order they were
// stamped (encoded), which holds when each is encoded just before it is queued.
//
// Keys are passed as `const std::string*`: nullptr = no key. A key must not be empty.
// Encoders given a key and no stamp take next_frame_stamp() (the process's clock and counter).
// All functions here are pure (but for that stamp) and may be called from any thread; a
// FrameReader belongs to one. For speed each thread keeps its own archives (reused from one
// message to the next, net/serialization.hpp) and its own HMAC context, keyed once per key;
// threads share none of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "chord/messages.hpp"
#include "chord/result.hpp"
#include "net/cluster_key.hpp"
#include "net/serialization.hpp"

namespace chordkv::net {

// --- frame layer -------------------------------------------------------------------------------

inline constexpr char kFrameMagic[4] = {'C', 'K', 'V', 'F'};
inline constexpr std::uint8_t kFrameVersion = 1;
inline constexpr std::uint8_t kFrameFlagMac = 0x01;
inline constexpr std::uint8_t kFrameFlagStamp = 0x02;
inline constexpr std::size_t kFrameHeaderBytes = 12;
inline constexpr std::size_t kFrameStampBytes = 24;
inline constexpr std::size_t kMacTagBytes = 32;  // HMAC-SHA256
// What a key adds to a frame: the stamp and the tag.
inline constexpr std::size_t kFrameAuthBytes = kFrameStampBytes + kMacTagBytes;
// The frame type of a stream-open frame (keyed TCP streams only; see above).
inline constexpr std::uint8_t kStreamOpenType = 31;

// The largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP); a datagram frame must fit in it.
inline constexpr std::size_t kUdpDatagramBytesMax = 65507;
// Largest frame payload that still fits one datagram with header, stamp and tag.
inline constexpr std::size_t kUdpPayloadBytesMax =
    kUdpDatagramBytesMax - kFrameHeaderBytes - kFrameAuthBytes;
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
    FrameStamp stamp;  // all zero unless flags has kFrameFlagStamp
};

// A complete frame around `payload`; when `key` is non-null, stamped with `stamp` (default:
// next_frame_stamp()) and tagged. Precondition: payload.size() <= 2^32 - 1 (asserted).
// Throws only std::bad_alloc.
std::string encode_frame(std::uint8_t type, std::string_view payload, const std::string* key);
std::string encode_frame(std::uint8_t type, std::string_view payload, const std::string* key,
                         const FrameStamp& stamp);

// Which end of a TCP connection sent a stream-open frame: the one that connected or the one
// that accepted. A reader expects the other end's role, so a stream-open frame cannot be
// reflected back to its sender.
enum class StreamRole : std::uint8_t {
    connector = 1,
    acceptor = 2,
};

// The stream-open frame `role` sends first on a keyed TCP connection (stamped by
// next_frame_stamp(), or `stamp`). Throws only std::bad_alloc.
std::string encode_stream_open(StreamRole role, const std::string& key);
std::string encode_stream_open(StreamRole role, const std::string& key, const FrameStamp& stamp);

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
//
// With a key and a ReplayGuard the reader also enforces the keyed-stream rules above: the
// first frame must be the peer's stream-open frame (its role `peer_role`, its stamp admitted by
// the guard), which the reader consumes and never returns; every later frame must come from
// the same sender with a larger sequence number and a stamp inside the guard's window. A
// violation is `unauthenticated` (`malformed_message` for a stream-open frame whose payload is
// not one role byte), sticky like any error, and replay_rejected() tells it apart from a bad
// tag. Without a key, or without a guard, no stamp is checked and every frame is returned.
class FrameReader {
public:
    using Clock = ReplayGuard::Clock;

    // `key` (nullptr = no key) must outlive the reader.
    FrameReader(const FrameLimits& limits, const std::string* key);
    // A keyed stream from a peer in `peer_role`; `key` and `guard` must outlive the reader.
    FrameReader(const FrameLimits& limits, const std::string* key, StreamRole peer_role,
                ReplayGuard& guard);

    // Adds bytes received from the stream. Throws only std::bad_alloc.
    void append(std::string_view bytes);
    // The next complete frame, nullopt when more bytes are needed, or the stream's error.
    // Stamps are checked against `now` (default: the wall clock).
    Result<std::optional<FrameView>> next() noexcept;
    Result<std::optional<FrameView>> next(Clock::time_point now) noexcept;
    // Bytes received but not yet returned (or consumed) as frames.
    std::size_t buffered_bytes() const noexcept { return buffer_.size() - consumed_; }
    // The stream stopped because a frame's stamp failed the replay checks (its tag was fine).
    bool replay_rejected() const noexcept { return replay_rejected_; }

private:
    // The keyed-stream rules for an authenticated frame.
    Status check_stream(const FrameView& frame, Clock::time_point now);

    FrameLimits limits_;
    const std::string* key_;
    ReplayGuard* guard_ = nullptr;  // set: a keyed stream
    StreamRole peer_role_ = StreamRole::connector;
    bool opened_ = false;  // the peer's stream-open frame was admitted
    std::uint64_t sender_ = 0;
    std::uint64_t sequence_ = 0;  // of the last frame accepted
    bool replay_rejected_ = false;
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
// rejects the frame otherwise). Stamped as encode_frame. Throws only std::bad_alloc.
std::string encode_envelope(const chord::Envelope& envelope, const std::string* key);
std::string encode_envelope(const chord::Envelope& envelope, const std::string* key,
                            const FrameStamp& stamp);

// Decodes one frame (decode_frame), then its payload as the envelope of the message its type
// byte names. Errors: decode_frame's; malformed_message for an unknown type, an archive error, a
// length that exceeds the bytes left, trailing bytes, an address over kAddressBytesMax or a peer
// list over kPeerListMax. Never throws.
Result<chord::Envelope> decode_envelope(std::string_view frame_bytes, const FrameLimits& limits,
                                        const std::string* key) noexcept;
// The envelope in a frame decode_frame (or a FrameReader) accepted: the same checks as above
// after the frame layer's. Errors: malformed_message. Never throws.
Result<chord::Envelope> decode_envelope(const FrameView& frame) noexcept;

namespace detail {
// Appends a frame header with a zero length to `out`; returns the header's offset. `tagged`:
// the frame will be stamped and tagged (flags 0x03).
std::size_t begin_frame(std::string& out, std::uint8_t type, bool tagged);
// Fills in the length of the frame begun at `offset` and, when `key` is set, appends the stamp
// (default: next_frame_stamp()) and the tag.
void finish_frame(std::string& out, std::size_t offset, const std::string* key);
void finish_frame(std::string& out, std::size_t offset, const std::string* key,
                  const FrameStamp& stamp);
// Bytes a frame's string reserves before its payload is appended: the header, the stamp and
// tag, and a payload of kFramePayloadReserveBytes, which holds every fixed-size message and a
// data message with a value of about 150 bytes. Without it the archive's small appends grew
// the string three or four times per frame (reallocation and copy were ~8 % of chordd's CPU
// under pipelined gets).
inline constexpr std::size_t kFramePayloadReserveBytes = 200;
inline constexpr std::size_t kFrameReserveBytes =
    kFrameHeaderBytes + kFrameAuthBytes + kFramePayloadReserveBytes;
}  // namespace detail

// The generic piece for other message families (the data path): a complete frame of `type`
// whose payload is encode_payload(body) (net/serialization.hpp), appended to `out` (a queue of
// frames, say: no string of its own). Decode with decode_frame / FrameReader, then
// decode_payload<T>(frame.payload). Stamped as encode_frame. Throws only std::bad_alloc, and
// then leaves `out` as it was.
template <class T>
void append_message_frame(std::string& out, std::uint8_t type, const T& body,
                          const std::string* key) {
    const std::size_t offset = detail::begin_frame(out, type, key != nullptr);
    try {
        append_payload(out, body);
        detail::finish_frame(out, offset, key);
    } catch (...) {
        out.resize(offset);
        throw;
    }
}
// The same frame as a string of its own.
template <class T>
std::string encode_message_frame(std::uint8_t type, const T& body, const std::string* key) {
    std::string out;
    out.reserve(detail::kFrameReserveBytes);
    append_message_frame(out, type, body, key);
    return out;
}
template <class T>
std::string encode_message_frame(std::uint8_t type, const T& body, const std::string* key,
                                 const FrameStamp& stamp) {
    std::string out;
    out.reserve(detail::kFrameReserveBytes);
    const std::size_t offset = detail::begin_frame(out, type, key != nullptr);
    append_payload(out, body);
    detail::finish_frame(out, offset, key, stamp);
    return out;
}

}  // namespace chordkv::net
