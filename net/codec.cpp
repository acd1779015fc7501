#include "net/codec.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <cassert>
#include <cstring>
#include <new>
#include <optional>
#include <type_traits>
#include <variant>

// The archives' base classes are templates whose bodies live in these .ipp files; Boost
// instantiates them only for its own archives, so this file instantiates them for ours.
#include <boost/archive/impl/archive_serializer_map.ipp>
#include <boost/archive/impl/basic_binary_iarchive.ipp>
#include <boost/archive/impl/basic_binary_iprimitive.ipp>
#include <boost/archive/impl/basic_binary_oarchive.ipp>
#include <boost/archive/impl/basic_binary_oprimitive.ipp>

namespace boost::archive {
template class basic_binary_iprimitive<chordkv::net::BoundedIarchive, char, std::char_traits<char>>;
template class basic_binary_iarchive<chordkv::net::BoundedIarchive>;
template class detail::archive_serializer_map<chordkv::net::BoundedIarchive>;
template class basic_binary_oprimitive<chordkv::net::WireOarchive, char, std::char_traits<char>>;
template class basic_binary_oarchive<chordkv::net::WireOarchive>;
template class detail::archive_serializer_map<chordkv::net::WireOarchive>;
}  // namespace boost::archive

namespace chordkv::net {

// --- the archives ------------------------------------------------------------------------------

BoundedIarchive::BoundedIarchive(SpanStreambuf& source, const PayloadLimits& limits)
    : Base(source, detail::kArchiveFlags), source_(source), limits_(limits) {
    init(detail::kArchiveFlags);
}

WireOarchive::WireOarchive(StringSinkStreambuf& sink) : Base(sink, detail::kArchiveFlags) {
    init(detail::kArchiveFlags);
}

namespace detail {

// A thread's reusable archive and the buffer it is bound to. Members are destroyed in reverse
// order: the archive (whose destructor touches its buffer) before the buffer.
struct InputArchiveSlot {
    SpanStreambuf source;
    std::optional<BoundedIarchive> archive;  // built on first use, dropped after a throw
    bool in_use = false;                     // a lease holds it
};

struct OutputArchiveSlot {
    StringSinkStreambuf sink;
    std::optional<WireOarchive> archive;
    bool in_use = false;
};

namespace {

InputArchiveSlot& thread_input_slot() noexcept {
    thread_local InputArchiveSlot slot;
    return slot;
}

OutputArchiveSlot& thread_output_slot() noexcept {
    thread_local OutputArchiveSlot slot;
    return slot;
}

}  // namespace

InputArchiveLease::InputArchiveLease() noexcept {
    InputArchiveSlot& slot = thread_input_slot();
    if (!slot.in_use) {
        slot.in_use = true;
        slot_ = &slot;
        thread_slot_ = true;
    }
}

InputArchiveLease::~InputArchiveLease() {
    if (slot_ == nullptr) return;
    if (keep_) {
        slot_->source.reset({});  // no view of the caller's bytes outlives the lease
    } else {
        slot_->archive.reset();
    }
    if (thread_slot_) slot_->in_use = false;
}

BoundedIarchive& InputArchiveLease::open(std::string_view payload, const PayloadLimits& limits) {
    if (slot_ == nullptr) {
        owned_ = std::make_unique<InputArchiveSlot>();
        slot_ = owned_.get();
    }
    if (slot_->archive) {
        slot_->archive->reset(payload, limits);
    } else {
        slot_->source.reset(payload);
        slot_->archive.emplace(slot_->source, limits);
    }
    return *slot_->archive;
}

OutputArchiveLease::OutputArchiveLease() noexcept {
    OutputArchiveSlot& slot = thread_output_slot();
    if (!slot.in_use) {
        slot.in_use = true;
        slot_ = &slot;
        thread_slot_ = true;
    }
}

OutputArchiveLease::~OutputArchiveLease() {
    if (slot_ == nullptr) return;
    if (!keep_) slot_->archive.reset();
    slot_->sink.set_target(nullptr);
    if (thread_slot_) slot_->in_use = false;
}

WireOarchive& OutputArchiveLease::open(std::string& out) {
    if (slot_ == nullptr) {
        owned_ = std::make_unique<OutputArchiveSlot>();
        slot_ = owned_.get();
    }
    slot_->sink.set_target(&out);
    if (!slot_->archive) slot_->archive.emplace(slot_->sink);
    return *slot_->archive;
}

}  // namespace detail

void BoundedIarchive::load_override(boost::serialization::collection_size_type& t) {
    this->Base::load_override(t);
    const std::size_t count = t;
    // Every element we serialize takes at least one byte, so a count above the bytes left is a
    // lie; checking it here keeps the vector's reserve()/resize() from allocating for it.
    if (count > remaining() || count > limits_.collection_size_max) {
        throw PayloadBoundsError("collection declares " + std::to_string(count) +
                                 " elements; bytes left " + std::to_string(remaining()) +
                                 ", limit " + std::to_string(limits_.collection_size_max));
    }
}

void BoundedIarchive::load(bool& t) {
    std::uint8_t byte = 0;
    load_binary(&byte, 1);
    // Reading a byte other than 0 or 1 into a bool is undefined behaviour; refuse it.
    if (byte > 1) throw PayloadBoundsError("bool byte " + std::to_string(byte) + " is not 0 or 1");
    t = byte == 1;
}

void BoundedIarchive::load(std::string& s) {
    std::uint64_t size = 0;
    load_binary(&size, sizeof(size));
    if (size > remaining() || size > limits_.string_bytes_max) {
        throw PayloadBoundsError("string declares " + std::to_string(size) + " bytes; bytes left " +
                                 std::to_string(remaining()) + ", limit " +
                                 std::to_string(limits_.string_bytes_max));
    }
    s.resize(static_cast<std::size_t>(size));
    if (size > 0) load_binary(s.data(), s.size());
}

// --- frame layer -------------------------------------------------------------------------------

namespace {

using Tag = std::array<unsigned char, kMacTagBytes>;

struct FrameHeader {
    std::uint8_t type = 0;
    std::uint8_t flags = 0;
    std::size_t payload_bytes = 0;

    bool tagged() const noexcept { return (flags & kFrameFlagMac) != 0; }
    bool stamped() const noexcept { return (flags & kFrameFlagStamp) != 0; }
    // The bytes the tag covers: header, payload and stamp.
    std::size_t covered_bytes() const noexcept {
        return kFrameHeaderBytes + payload_bytes + (stamped() ? kFrameStampBytes : 0);
    }
    std::size_t frame_bytes() const noexcept {
        return covered_bytes() + (tagged() ? kMacTagBytes : 0);
    }
};

constexpr std::uint8_t kKnownFrameFlags = kFrameFlagMac | kFrameFlagStamp;

void put_u64_be(char* out, std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (56 - 8 * i)) & 0xFF);
}

std::uint64_t get_u64_be(const char* in) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
    return v;
}

std::uint8_t byte_at(std::string_view bytes, std::size_t i) noexcept {
    return static_cast<std::uint8_t>(bytes[i]);
}

// Checks the kFrameHeaderBytes at the start of `bytes` (the caller ensures they are there).
Result<FrameHeader> parse_header(std::string_view bytes, const FrameLimits& limits) noexcept {
    if (std::memcmp(bytes.data(), kFrameMagic, sizeof(kFrameMagic)) != 0) {
        return Result<FrameHeader>(Errc::malformed_message, "bad frame magic");
    }
    if (byte_at(bytes, 4) != kFrameVersion) {
        return Result<FrameHeader>(Errc::malformed_message, "unsupported frame version " +
                                                                std::to_string(byte_at(bytes, 4)));
    }
    FrameHeader header;
    header.type = byte_at(bytes, 5);
    header.flags = byte_at(bytes, 6);
    if ((header.flags & ~kKnownFrameFlags) != 0) {
        return Result<FrameHeader>(Errc::malformed_message,
                                   "unknown frame flags " + std::to_string(header.flags));
    }
    if (header.stamped() && !header.tagged()) {
        return Result<FrameHeader>(Errc::malformed_message, "frame has a stamp but no MAC tag");
    }
    if (byte_at(bytes, 7) != 0) {
        return Result<FrameHeader>(Errc::malformed_message, "reserved frame byte is not zero");
    }
    header.payload_bytes = (std::size_t{byte_at(bytes, 8)} << 24) |
                           (std::size_t{byte_at(bytes, 9)} << 16) |
                           (std::size_t{byte_at(bytes, 10)} << 8) | std::size_t{byte_at(bytes, 11)};
    if (header.payload_bytes > limits.payload_bytes_max) {
        return Result<FrameHeader>(Errc::too_large, "frame payload of " +
                                                        std::to_string(header.payload_bytes) +
                                                        " bytes exceeds the limit of " +
                                                        std::to_string(limits.payload_bytes_max));
    }
    return header;
}

// HMAC-SHA256 for one thread, keyed once. OpenSSL's one-shot HMAC() fetches the algorithm and
// hashes the padded key into the inner and outer states on every call, which costs more than
// tagging a small frame. This keeps an EVP_MAC context holding those states for the last key it
// was given; each tag restarts from them (EVP_MAC_init with a null key keeps the key) and
// only a different key pays for a new schedule.
class ThreadHmac {
public:
    ThreadHmac() = default;
    ThreadHmac(const ThreadHmac&) = delete;
    ThreadHmac& operator=(const ThreadHmac&) = delete;
    ~ThreadHmac() { forget(); }

    // HMAC-SHA256 of `data` under `key`; false only if OpenSSL fails (out of memory).
    bool compute(const std::string& key, std::string_view data, Tag& tag) noexcept {
        assert(!key.empty());
        const bool restarted = (ctx_ != nullptr && key == key_)
                                   ? EVP_MAC_init(ctx_, nullptr, 0, nullptr) == 1
                                   : set_key(key);
        std::size_t tag_bytes = 0;
        if (!restarted ||
            EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>(data.data()),
                           data.size()) != 1 ||
            EVP_MAC_final(ctx_, tag.data(), &tag_bytes, tag.size()) != 1 ||
            tag_bytes != kMacTagBytes) {
            forget();
            return false;
        }
        return true;
    }

private:
    // Keys the context with `key`, creating it if needed.
    bool set_key(const std::string& key) noexcept {
        forget();
        try {
            key_ = key;
        } catch (const std::bad_alloc&) {
            return false;
        }
        EVP_MAC* mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
        if (mac == nullptr) return false;
        ctx_ = EVP_MAC_CTX_new(mac);  // holds its own reference to `mac`
        EVP_MAC_free(mac);
        if (ctx_ == nullptr) return false;
        char digest[] = "SHA256";
        const OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end()};
        return EVP_MAC_init(ctx_, reinterpret_cast<const unsigned char*>(key_.data()), key_.size(),
                            params) == 1;
    }

    // Drops the context and wipes the copy of the key.
    void forget() noexcept {
        EVP_MAC_CTX_free(ctx_);
        ctx_ = nullptr;
        OPENSSL_cleanse(key_.data(), key_.size());
        key_.clear();
    }

    EVP_MAC_CTX* ctx_ = nullptr;  // keyed with key_ when set
    std::string key_;
};

// HMAC-SHA256 of `data` under `key` with the calling thread's ThreadHmac; false only if
// OpenSSL fails (out of memory).
bool compute_tag(const std::string& key, std::string_view data, Tag& tag) noexcept {
    thread_local ThreadHmac hmac;
    return hmac.compute(key, data, tag);
}

// Applies the MAC policy (codec.hpp) to a complete frame whose header is `header`.
Status check_tag(std::string_view frame, const FrameHeader& header,
                 const std::string* key) noexcept {
    if (key == nullptr) {
        if (header.tagged()) {
            return Status(Errc::unauthenticated,
                          "frame carries a MAC tag but this node has no cluster key");
        }
        return Status();
    }
    if (!header.tagged()) return Status(Errc::unauthenticated, "frame has no MAC tag");
    if (!header.stamped()) {
        return Status(Errc::unauthenticated,
                      "tagged frame has no freshness stamp (sent by a chordkv without replay "
                      "protection?)");
    }
    const std::size_t covered = header.covered_bytes();
    Tag expected{};
    if (!compute_tag(*key, frame.substr(0, covered), expected)) {
        return Status(Errc::unauthenticated, "could not compute the MAC");
    }
    if (CRYPTO_memcmp(expected.data(), frame.data() + covered, kMacTagBytes) != 0) {
        return Status(Errc::unauthenticated, "wrong MAC tag");
    }
    return Status();
}

FrameView view_of(std::string_view frame, const FrameHeader& header) noexcept {
    FrameView view{header.type, header.flags, frame.substr(kFrameHeaderBytes, header.payload_bytes),
                   FrameStamp{}};
    if (header.stamped()) {
        const char* stamp = frame.data() + kFrameHeaderBytes + header.payload_bytes;
        view.stamp.sent_at_ms = get_u64_be(stamp);
        view.stamp.sender = get_u64_be(stamp + 8);
        view.stamp.sequence = get_u64_be(stamp + 16);
    }
    return view;
}

}  // namespace

namespace detail {

std::size_t begin_frame(std::string& out, std::uint8_t type, bool tagged) {
    const std::size_t offset = out.size();
    out.append(kFrameMagic, sizeof(kFrameMagic));
    out.push_back(static_cast<char>(kFrameVersion));
    out.push_back(static_cast<char>(type));
    out.push_back(static_cast<char>(tagged ? kKnownFrameFlags : 0));
    out.push_back('\0');
    out.append(4, '\0');  // payload length, filled in by finish_frame
    return offset;
}

void finish_frame(std::string& out, std::size_t offset, const std::string* key) {
    if (key == nullptr) {
        finish_frame(out, offset, nullptr, FrameStamp{});
    } else {
        finish_frame(out, offset, key, next_frame_stamp());
    }
}

void finish_frame(std::string& out, std::size_t offset, const std::string* key,
                  const FrameStamp& stamp) {
    assert(out.size() >= offset + kFrameHeaderBytes);
    assert(((static_cast<std::uint8_t>(out[offset + 6]) & kFrameFlagMac) != 0) == (key != nullptr));
    const std::size_t payload_bytes = out.size() - offset - kFrameHeaderBytes;
    assert(payload_bytes <= 0xFFFFFFFFu);
    for (int i = 0; i < 4; ++i) {
        out[offset + 8 + static_cast<std::size_t>(i)] =
            static_cast<char>((payload_bytes >> (24 - 8 * i)) & 0xFF);
    }
    if (key == nullptr) return;
    char stamp_bytes[kFrameStampBytes];
    put_u64_be(stamp_bytes, stamp.sent_at_ms);
    put_u64_be(stamp_bytes + 8, stamp.sender);
    put_u64_be(stamp_bytes + 16, stamp.sequence);
    out.append(stamp_bytes, sizeof stamp_bytes);
    Tag tag{};
    if (!compute_tag(*key, std::string_view(out).substr(offset), tag)) throw std::bad_alloc();
    out.append(reinterpret_cast<const char*>(tag.data()), tag.size());
}

}  // namespace detail

std::string encode_frame(std::uint8_t type, std::string_view payload, const std::string* key) {
    return encode_frame(type, payload, key, key != nullptr ? next_frame_stamp() : FrameStamp{});
}

std::string encode_frame(std::uint8_t type, std::string_view payload, const std::string* key,
                         const FrameStamp& stamp) {
    std::string out;
    out.reserve(kFrameHeaderBytes + payload.size() + (key != nullptr ? kFrameAuthBytes : 0));
    const std::size_t offset = detail::begin_frame(out, type, key != nullptr);
    out.append(payload);
    detail::finish_frame(out, offset, key, stamp);
    return out;
}

std::string encode_stream_open(StreamRole role, const std::string& key) {
    return encode_stream_open(role, key, next_frame_stamp());
}

std::string encode_stream_open(StreamRole role, const std::string& key, const FrameStamp& stamp) {
    const char payload = static_cast<char>(role);
    return encode_frame(kStreamOpenType, std::string_view(&payload, 1), &key, stamp);
}

Result<FrameView> decode_frame(std::string_view bytes, const FrameLimits& limits,
                               const std::string* key) noexcept {
    if (bytes.size() < kFrameHeaderBytes) {
        return Result<FrameView>(
            Errc::malformed_message,
            "frame of " + std::to_string(bytes.size()) + " bytes is shorter than its header");
    }
    Result<FrameHeader> header = parse_header(bytes, limits);
    if (!header) return header.error();
    if (bytes.size() != header->frame_bytes()) {
        return Result<FrameView>(Errc::malformed_message,
                                 "frame declares " + std::to_string(header->frame_bytes()) +
                                     " bytes but has " + std::to_string(bytes.size()));
    }
    if (Status mac = check_tag(bytes, *header, key); !mac) return mac.error();
    return view_of(bytes, *header);
}

FrameReader::FrameReader(const FrameLimits& limits, const std::string* key)
    : limits_(limits), key_(key) {}

FrameReader::FrameReader(const FrameLimits& limits, const std::string* key, StreamRole peer_role,
                         ReplayGuard& guard)
    : limits_(limits), key_(key), guard_(&guard), peer_role_(peer_role) {}

void FrameReader::append(std::string_view bytes) {
    // Drop consumed bytes once they are at least half the buffer: each byte is moved at most
    // once per halving, so compaction costs amortised O(1) per byte received.
    if (consumed_ == buffer_.size()) {
        buffer_.clear();
        consumed_ = 0;
    } else if (consumed_ > 0 && consumed_ >= buffer_.size() / 2) {
        buffer_.erase(0, consumed_);
        consumed_ = 0;
    }
    buffer_.append(bytes);
}

Result<std::optional<FrameView>> FrameReader::next() noexcept {
    return next(Clock::now());
}

Result<std::optional<FrameView>> FrameReader::next(Clock::time_point now) noexcept {
    using R = Result<std::optional<FrameView>>;
    // Bounded: each pass consumes a frame; only a stream-open frame loops.
    for (;;) {
        if (error_) return R(*error_);
        const std::string_view pending = std::string_view(buffer_).substr(consumed_);
        if (pending.size() < kFrameHeaderBytes) return R(std::nullopt);
        Result<FrameHeader> header = parse_header(pending, limits_);
        if (!header) {
            error_ = header.error();
            return R(*error_);
        }
        if (pending.size() < header->frame_bytes()) return R(std::nullopt);
        const std::string_view frame = pending.substr(0, header->frame_bytes());
        if (Status mac = check_tag(frame, *header, key_); !mac) {
            error_ = mac.error();
            return R(*error_);
        }
        const FrameView view = view_of(frame, *header);
        if (guard_ != nullptr && key_ != nullptr) {
            if (Status fresh = check_stream(view, now); !fresh) {
                error_ = fresh.error();
                return R(*error_);
            }
            if (view.type == kStreamOpenType) {
                consumed_ += frame.size();
                continue;
            }
        }
        consumed_ += frame.size();
        return R(view);
    }
}

Status FrameReader::check_stream(const FrameView& frame, Clock::time_point now) {
    const auto rejected = [this](std::string detail) {
        replay_rejected_ = true;
        return Status(Errc::unauthenticated, std::move(detail));
    };
    if (!opened_) {
        if (frame.type != kStreamOpenType) {
            return rejected("keyed stream does not start with a stream-open frame (type " +
                            std::to_string(frame.type) + " first)");
        }
        if (frame.payload.size() != 1) {
            return Status(Errc::malformed_message, "stream-open frame with a payload of " +
                                                       std::to_string(frame.payload.size()) +
                                                       " bytes");
        }
        if (static_cast<std::uint8_t>(frame.payload[0]) != static_cast<std::uint8_t>(peer_role_)) {
            return rejected("stream-open frame of the wrong role (reflected?)");
        }
        if (Status fresh = guard_->admit(frame.stamp, now); !fresh) {
            return rejected("stream-open frame: " + fresh.error().detail());
        }
        opened_ = true;
        sender_ = frame.stamp.sender;
        sequence_ = frame.stamp.sequence;
        return Status();
    }
    if (frame.type == kStreamOpenType) return rejected("a second stream-open frame");
    if (frame.stamp.sender != sender_) {
        return rejected("frame from sender " + std::to_string(frame.stamp.sender) +
                        " on a stream opened by " + std::to_string(sender_));
    }
    if (frame.stamp.sequence <= sequence_) {
        return rejected("frame sequence " + std::to_string(frame.stamp.sequence) + " not after " +
                        std::to_string(sequence_) + " (replayed?)");
    }
    if (Status fresh = guard_->check_window(frame.stamp, now); !fresh) {
        return rejected(fresh.error().detail());
    }
    sequence_ = frame.stamp.sequence;
    return Status();
}

// --- protocol messages -------------------------------------------------------------------------

namespace {

template <class T>
constexpr WireType wire_type_of();
template <>
constexpr WireType wire_type_of<chord::Ping>() {
    return WireType::ping;
}
template <>
constexpr WireType wire_type_of<chord::Pong>() {
    return WireType::pong;
}
template <>
constexpr WireType wire_type_of<chord::GetNeighbors>() {
    return WireType::get_neighbors;
}
template <>
constexpr WireType wire_type_of<chord::Neighbors>() {
    return WireType::neighbors;
}
template <>
constexpr WireType wire_type_of<chord::FindNext>() {
    return WireType::find_next;
}
template <>
constexpr WireType wire_type_of<chord::FindNextReply>() {
    return WireType::find_next_reply;
}
template <>
constexpr WireType wire_type_of<chord::Notify>() {
    return WireType::notify;
}
template <>
constexpr WireType wire_type_of<chord::Leave>() {
    return WireType::leave;
}
template <>
constexpr WireType wire_type_of<chord::LeaveAck>() {
    return WireType::leave_ack;
}

// The envelope's fields, in wire order, for either direction of the archive.
template <class Archive, class EnvelopeRef>
void envelope_fields(Archive& ar, EnvelopeRef& e) {
    ar& e.from& e.to_address& e.to_id& e.rpc_id& e.reply;
}

template <class T>
void load_as(BoundedIarchive& ar, chord::Message& body) {
    T message{};
    ar >> message;
    body = std::move(message);
}

// Loads the body of wire type `type` into `body`; false for an unknown type.
bool load_body(BoundedIarchive& ar, std::uint8_t type, chord::Message& body) {
    switch (static_cast<WireType>(type)) {
        case WireType::ping:
            load_as<chord::Ping>(ar, body);
            return true;
        case WireType::pong:
            load_as<chord::Pong>(ar, body);
            return true;
        case WireType::get_neighbors:
            load_as<chord::GetNeighbors>(ar, body);
            return true;
        case WireType::neighbors:
            load_as<chord::Neighbors>(ar, body);
            return true;
        case WireType::find_next:
            load_as<chord::FindNext>(ar, body);
            return true;
        case WireType::find_next_reply:
            load_as<chord::FindNextReply>(ar, body);
            return true;
        case WireType::notify:
            load_as<chord::Notify>(ar, body);
            return true;
        case WireType::leave:
            load_as<chord::Leave>(ar, body);
            return true;
        case WireType::leave_ack:
            load_as<chord::LeaveAck>(ar, body);
            return true;
    }
    return false;
}

bool is_known_type(std::uint8_t type) noexcept {
    return type >= static_cast<std::uint8_t>(WireType::ping) &&
           type <= static_cast<std::uint8_t>(WireType::leave_ack);
}

Status check_address(const std::string& address, const char* what) {
    if (address.size() <= kAddressBytesMax) return Status();
    return Status(Errc::malformed_message, std::string(what) + " address of " +
                                               std::to_string(address.size()) + " bytes exceeds " +
                                               std::to_string(kAddressBytesMax));
}

Status check_peers(const std::vector<chord::Peer>& peers) {
    if (peers.size() > kPeerListMax) {
        return Status(Errc::malformed_message, "peer list of " + std::to_string(peers.size()) +
                                                   " exceeds " + std::to_string(kPeerListMax));
    }
    for (const chord::Peer& peer : peers) {
        if (Status s = check_address(peer.address, "peer"); !s) return s;
    }
    return Status();
}

// The semantic bounds of codec.hpp on a decoded envelope.
Status validate(const chord::Envelope& e) {
    if (Status s = check_address(e.from.address, "sender"); !s) return s;
    if (Status s = check_address(e.to_address, "destination"); !s) return s;
    return std::visit(
        [](const auto& body) -> Status {
            using T = std::decay_t<decltype(body)>;
            if constexpr (std::is_same_v<T, chord::Neighbors> || std::is_same_v<T, chord::Leave>) {
                if (body.predecessor) {
                    if (Status s = check_address(body.predecessor->address, "peer"); !s) return s;
                }
                return check_peers(body.successors);
            } else if constexpr (std::is_same_v<T, chord::FindNextReply>) {
                return check_peers(body.peers);
            } else {
                return Status();
            }
        },
        e.body);
}

}  // namespace

WireType wire_type(const chord::Message& body) noexcept {
    return std::visit(
        [](const auto& message) { return wire_type_of<std::decay_t<decltype(message)>>(); }, body);
}

std::string encode_envelope(const chord::Envelope& envelope, const std::string* key) {
    return encode_envelope(envelope, key, key != nullptr ? next_frame_stamp() : FrameStamp{});
}

std::string encode_envelope(const chord::Envelope& envelope, const std::string* key,
                            const FrameStamp& stamp) {
    std::string out;
    const std::size_t offset = detail::begin_frame(
        out, static_cast<std::uint8_t>(wire_type(envelope.body)), key != nullptr);
    {
        detail::OutputArchiveLease lease;
        WireOarchive& archive = lease.open(out);
        envelope_fields(archive, envelope);
        std::visit([&](const auto& body) { archive << body; }, envelope.body);
        lease.keep();
    }
    detail::finish_frame(out, offset, key, stamp);
    return out;
}

Result<chord::Envelope> decode_envelope(std::string_view frame_bytes, const FrameLimits& limits,
                                        const std::string* key) noexcept {
    Result<FrameView> frame = decode_frame(frame_bytes, limits, key);
    if (!frame) return frame.error();
    return decode_envelope(*frame);
}

Result<chord::Envelope> decode_envelope(const FrameView& frame) noexcept {
    using R = Result<chord::Envelope>;
    if (!is_known_type(frame.type)) {
        return R(Errc::malformed_message,
                 "unknown protocol message type " + std::to_string(frame.type));
    }
    try {
        chord::Envelope envelope;
        PayloadLimits payload_limits;
        payload_limits.collection_size_max = kPeerListMax;
        payload_limits.string_bytes_max = kAddressBytesMax;
        Status decoded =
            detail::run_decoder(frame.payload, payload_limits, [&](BoundedIarchive& archive) {
                envelope_fields(archive, envelope);
                if (!load_body(archive, frame.type, envelope.body)) {
                    throw PayloadBoundsError("unknown protocol message type");
                }
            });
        if (!decoded) return decoded.error();
        if (Status valid = validate(envelope); !valid) return valid.error();
        return envelope;
    } catch (const std::exception&) {
        // Only building the error or moving the envelope can get here (std::bad_alloc).
        return R(Errc::malformed_message, "decoder: out of memory");
    }
}

}  // namespace chordkv::net
