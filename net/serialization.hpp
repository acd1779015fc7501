// Boost.Serialization for chordkv's wire payloads: a bounded input archive, the non-intrusive
// `serialize` functions of the chord structs, and the generic encode_payload / decode_payload
// that the protocol codec (net/codec) and later data-path messages share.
//
// Payload = a Boost binary archive without header. Every type here is `object_serializable`
// (no class-info bytes) so a payload is the plain concatenation of its fields:
//
//     integer           its bytes, little-endian (native; big-endian builds are refused below)
//     bool              1 byte, 0 or 1 (any other value is malformed)
//     std::string       u64 length, then the bytes
//     NodeId            20 raw bytes, big-endian as NodeId stores them
//     std::optional<T>  bool present, then T when present
//     std::vector<T>    u64 count, u32 item version (0), then the elements
//     empty struct      nothing
//
// Decoding is the trust boundary: the bytes come from the network. BoundedIarchive refuses,
// BEFORE allocating, any string or collection whose declared length exceeds what is left of
// the payload or the caller's PayloadLimits, and any bool byte other than 0 or 1. decode_payload
// turns every exception thrown inside the archive (Boost's, ours, std::bad_alloc) into
// Errc::malformed_message: no exception leaves it.
//
// One archive per thread. Boost builds a std::locale in every archive's constructor (even with
// no_codecvt), which costs more than encoding or decoding a typical message, so each thread
// keeps one WireOarchive and one BoundedIarchive and re-points them at every message
// (detail::OutputArchiveLease, detail::InputArchiveLease). That is sound because only
// stateless wire types may pass through them (is_stateless_wire_type_v, checked at compile
// time for every type and every field they serialize): such types never make an archive
// record class ids, versions or object addresses, so one message leaves nothing behind that
// could change the next one's bytes. An archive that threw (malformed input, out of memory)
// stopped somewhere mid-message and is destroyed, not reused; an encode or decode nested
// inside another on the same thread gets a fresh archive of its own.
//
// Include this header, not <boost/serialization/vector.hpp> alone, wherever chord structs are
// serialized: the implementation levels declared here change their byte layout.
#pragma once

#include <boost/predef/other/endian.h>

#include <boost/archive/basic_archive.hpp>
#include <boost/archive/binary_iarchive_impl.hpp>
#include <boost/archive/binary_oarchive_impl.hpp>
#include <boost/serialization/level.hpp>
#include <boost/serialization/split_free.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/tracking.hpp>
#include <boost/serialization/vector.hpp>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <string_view>
#include <utility>

#include "chord/messages.hpp"
#include "chord/node_id.hpp"
#include "chord/result.hpp"

// The binary archive writes integers in native byte order; the wire format is defined as the
// little-endian, 64-bit layout. A build that would speak another dialect must not compile.
static_assert(BOOST_ENDIAN_LITTLE_BYTE, "chordkv's wire format needs a little-endian target");
static_assert(sizeof(std::size_t) == 8, "chordkv's wire format needs a 64-bit size_t");

namespace chordkv::net {

// Default bound on the element count of any one collection inside a payload.
inline constexpr std::size_t kCollectionSizeMax = 65536;

// Bounds a decoder enforces inside one payload, before it allocates. The bytes left in the
// payload bound every length as well, so these only need to be tighter than that.
//
// The collection check assumes every element encodes to at least one byte (true of every type
// chordkv sends); a collection of empty structs longer than the bytes left would be refused.
struct PayloadLimits {
    // Most elements one collection (vector, map, ...) may declare. Default 65536.
    std::size_t collection_size_max = kCollectionSizeMax;
    // Longest string. Default: unbounded here (still bounded by the bytes left).
    std::size_t string_bytes_max = std::numeric_limits<std::size_t>::max();
};

// True for the types an archive may carry here: primitives (integers, bool, enums, std::string)
// and object_serializable types that are never tracked. For these Boost writes and reads only
// the fields, and the archive keeps no state from one value to the next: no class ids or
// versions (written once per archive for object_class_info types) and no object addresses
// (tracking). Every type declared with CHORDKV_WIRE_STRUCT (below) qualifies.
template <class T>
inline constexpr bool is_stateless_wire_type_v =
    (boost::serialization::implementation_level<T>::value == boost::serialization::primitive_type ||
     boost::serialization::implementation_level<T>::value ==
         boost::serialization::object_serializable) &&
    boost::serialization::tracking_level<T>::value == boost::serialization::track_never;

// A read-only streambuf over bytes the caller keeps alive; knows how many are left.
class SpanStreambuf final : public std::streambuf {
public:
    SpanStreambuf() noexcept { reset({}); }
    explicit SpanStreambuf(std::string_view bytes) noexcept { reset(bytes); }

    // Reads `bytes` from now on, from their start.
    void reset(std::string_view bytes) noexcept {
        // std::streambuf wants char*; this buffer has no put area and never writes through it.
        char* begin = const_cast<char*>(bytes.data());
        setg(begin, begin, begin + bytes.size());
    }
    std::size_t remaining() const noexcept { return static_cast<std::size_t>(egptr() - gptr()); }
};

// A write-only streambuf that appends everything to a std::string, which can be changed
// between messages. Writing with no string set is a bug (asserted).
class StringSinkStreambuf final : public std::streambuf {
public:
    StringSinkStreambuf() noexcept = default;
    explicit StringSinkStreambuf(std::string& out) noexcept : out_(&out) {}

    // Appends to `*out` from now on; nullptr: to nothing.
    void set_target(std::string* out) noexcept { out_ = out; }

protected:
    std::streamsize xsputn(const char* s, std::streamsize n) override {
        assert(out_ != nullptr);
        out_->append(s, static_cast<std::size_t>(n));
        return n;
    }
    int_type overflow(int_type ch) override {
        assert(out_ != nullptr);
        if (!traits_type::eq_int_type(ch, traits_type::eof())) {
            out_->push_back(traits_type::to_char_type(ch));
        }
        return traits_type::not_eof(ch);
    }

private:
    std::string* out_ = nullptr;
};

// Thrown inside BoundedIarchive when a declared length or a value is out of bounds; caught by
// decode_payload, never seen outside this header and codec.cpp.
class PayloadBoundsError final : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Boost's binary input archive with the allocation guards described at the top of this file.
// Reads from a SpanStreambuf; flags are always no_header | no_codecvt | no_tracking. Only
// stateless wire types compile (is_stateless_wire_type_v). Use it through decode_payload;
// constructing one directly means catching its exceptions yourself.
class BoundedIarchive final
    : public boost::archive::binary_iarchive_impl<BoundedIarchive, char, std::char_traits<char>> {
    using Base =
        boost::archive::binary_iarchive_impl<BoundedIarchive, char, std::char_traits<char>>;
    using Primitive =
        boost::archive::basic_binary_iprimitive<BoundedIarchive, char, std::char_traits<char>>;

public:
    // `source` must outlive the archive.
    BoundedIarchive(SpanStreambuf& source, const PayloadLimits& limits);

    // Reads `payload` under `limits` from now on, as a new archive would. Only after a read
    // that returned normally: an archive that threw must be destroyed instead.
    void reset(std::string_view payload, const PayloadLimits& limits) noexcept {
        source_.reset(payload);
        limits_ = limits;
    }

    // Bytes not yet consumed.
    std::size_t remaining() const noexcept { return source_.remaining(); }

private:
    friend class boost::archive::detail::interface_iarchive<BoundedIarchive>;
    friend class boost::archive::basic_binary_iarchive<BoundedIarchive>;
    friend class boost::archive::load_access;
    friend Primitive;
    friend Base;

    // Every value read, at every depth, passes through here.
    template <class T>
    void load_override(T& t) {
        static_assert(is_stateless_wire_type_v<T>,
                      "a wire type must be primitive or CHORDKV_WIRE_STRUCT (object_serializable, "
                      "track_never): the per-thread archive must not keep state between messages");
        this->Base::load_override(t);
    }
    // Collections declare their size first and allocate right after: check it here.
    void load_override(boost::serialization::collection_size_type& t);

    using Primitive::load;
    void load(bool& t);
    void load(std::string& s);
    // Unbounded or unused encodings: refuse them at compile time.
    void load(std::wstring&) = delete;
    void load(char*) = delete;
    void load(wchar_t*) = delete;

    SpanStreambuf& source_;
    PayloadLimits limits_;
};

// Boost's binary output archive, writing to a StringSinkStreambuf with the flags no_header |
// no_codecvt | no_tracking. Only stateless wire types compile (is_stateless_wire_type_v). Its
// bytes are those of boost::archive::binary_oarchive for every wire type; unlike that archive
// it has no array optimization, so a vector of integers would be written element by element,
// the way BoundedIarchive reads it. Use it through append_payload / encode_payload.
class WireOarchive final
    : public boost::archive::binary_oarchive_impl<WireOarchive, char, std::char_traits<char>> {
    using Base = boost::archive::binary_oarchive_impl<WireOarchive, char, std::char_traits<char>>;
    using Primitive =
        boost::archive::basic_binary_oprimitive<WireOarchive, char, std::char_traits<char>>;

public:
    // `sink` must outlive the archive.
    explicit WireOarchive(StringSinkStreambuf& sink);

private:
    friend class boost::archive::detail::interface_oarchive<WireOarchive>;
    friend class boost::archive::basic_binary_oarchive<WireOarchive>;
    friend class boost::archive::save_access;
    friend Primitive;
    friend Base;

    // Every value written, at every depth, passes through here.
    template <class T>
    void save_override(const T& t) {
        static_assert(is_stateless_wire_type_v<T>,
                      "a wire type must be primitive or CHORDKV_WIRE_STRUCT (object_serializable, "
                      "track_never): the per-thread archive must not keep state between messages");
        this->Base::save_override(t);
    }
};

namespace detail {

inline constexpr unsigned kArchiveFlags =
    boost::archive::no_header | boost::archive::no_codecvt | boost::archive::no_tracking;

struct InputArchiveSlot;
struct OutputArchiveSlot;

// Lends the calling thread's BoundedIarchive for one decode (see the top of this file):
//
//     InputArchiveLease lease;
//     BoundedIarchive& archive = lease.open(payload, limits);
//     ... read ...
//     lease.keep();   // the read returned normally; without it the archive is destroyed
//
// While a lease holds the thread's archive, another lease on the same thread (a decode nested
// inside a decode) builds an archive of its own. Not movable; one thread.
class InputArchiveLease {
public:
    InputArchiveLease() noexcept;
    ~InputArchiveLease();
    InputArchiveLease(const InputArchiveLease&) = delete;
    InputArchiveLease& operator=(const InputArchiveLease&) = delete;

    // The archive, reading `payload` under `limits`. Call once. Throws std::bad_alloc (when an
    // archive has to be built).
    BoundedIarchive& open(std::string_view payload, const PayloadLimits& limits);
    // Everything read so far was read without an exception: the archive may be reused.
    void keep() noexcept { keep_ = true; }

private:
    InputArchiveSlot* slot_ = nullptr;  // the thread's slot, or owned_, or none yet
    std::unique_ptr<InputArchiveSlot> owned_;
    bool thread_slot_ = false;  // slot_ is the thread's, marked in use by this lease
    bool keep_ = false;
};

// Lends the calling thread's WireOarchive for one encode; used like InputArchiveLease.
class OutputArchiveLease {
public:
    OutputArchiveLease() noexcept;
    ~OutputArchiveLease();
    OutputArchiveLease(const OutputArchiveLease&) = delete;
    OutputArchiveLease& operator=(const OutputArchiveLease&) = delete;

    // The archive, appending to `out` (which must outlive the lease). Call once. Throws
    // std::bad_alloc (when an archive has to be built).
    WireOarchive& open(std::string& out);
    // Everything written so far was written without an exception: the archive may be reused.
    void keep() noexcept { keep_ = true; }

private:
    OutputArchiveSlot* slot_ = nullptr;
    std::unique_ptr<OutputArchiveSlot> owned_;
    bool thread_slot_ = false;
    bool keep_ = false;
};

// Runs `read(archive)` over `payload` with every exception contained, then requires that the
// whole payload was consumed. Errors: malformed_message naming what went wrong.
template <class Read>
Status run_decoder(std::string_view payload, const PayloadLimits& limits, Read&& read) noexcept {
    InputArchiveLease lease;
    try {
        BoundedIarchive& archive = lease.open(payload, limits);
        std::forward<Read>(read)(archive);
        lease.keep();
        if (archive.remaining() != 0) {
            return Status(Errc::malformed_message,
                          std::to_string(archive.remaining()) + " trailing bytes after the body");
        }
        return Status();
    } catch (const boost::archive::archive_exception& e) {
        return Status(Errc::malformed_message, std::string("archive: ") + e.what());
    } catch (const PayloadBoundsError& e) {
        return Status(Errc::malformed_message, e.what());
    } catch (const std::bad_alloc&) {
        return Status(Errc::malformed_message, "payload made the decoder run out of memory");
    } catch (const std::exception& e) {
        return Status(Errc::malformed_message, std::string("decoder: ") + e.what());
    } catch (...) {
        return Status(Errc::malformed_message, "decoder: unknown exception");
    }
}

}  // namespace detail

// Appends the archive of `value` to `out`. Throws only std::bad_alloc; `out` may then hold
// part of the archive.
template <class T>
void append_payload(std::string& out, const T& value) {
    static_assert(is_stateless_wire_type_v<T>,
                  "encode only primitives and CHORDKV_WIRE_STRUCT types (net/serialization.hpp)");
    detail::OutputArchiveLease lease;
    lease.open(out) << value;
    lease.keep();
}

// The archive of `value`. Throws only std::bad_alloc.
template <class T>
std::string encode_payload(const T& value) {
    std::string out;
    append_payload(out, value);
    return out;
}

// Decodes a T that fills `payload` exactly. T must be default-constructible.
// Errors: malformed_message (archive error, bound exceeded, bad bool, trailing bytes).
// Never throws.
template <class T>
Result<T> decode_payload(std::string_view payload, const PayloadLimits& limits = {}) noexcept {
    static_assert(is_stateless_wire_type_v<T>,
                  "decode only primitives and CHORDKV_WIRE_STRUCT types (net/serialization.hpp)");
    try {
        T value{};
        Status status = detail::run_decoder(payload, limits,
                                            [&](BoundedIarchive& archive) { archive >> value; });
        if (!status) return status.error();
        return value;
    } catch (const std::exception&) {
        // Only constructing or moving T can get here (std::bad_alloc).
        return Result<T>(Errc::malformed_message, "decoder: out of memory");
    }
}

}  // namespace chordkv::net

// --- non-intrusive serialization of the chord structs ---------------------------------------

namespace boost::serialization {

template <class Archive>
void save(Archive& ar, const chordkv::chord::NodeId& id, const unsigned int /*version*/) {
    ar.save_binary(id.bytes().data(), chordkv::chord::NodeId::kBytes);
}
template <class Archive>
void load(Archive& ar, chordkv::chord::NodeId& id, const unsigned int /*version*/) {
    chordkv::chord::NodeId::Bytes bytes{};
    ar.load_binary(bytes.data(), bytes.size());
    id = chordkv::chord::NodeId(bytes);
}
template <class Archive>
void serialize(Archive& ar, chordkv::chord::NodeId& id, const unsigned int version) {
    split_free(ar, id, version);
}

// std::optional<T> (Boost 1.74 has no support): a presence bool, then the value if present.
template <class Archive, class T>
void save(Archive& ar, const std::optional<T>& value, const unsigned int /*version*/) {
    const bool present = value.has_value();
    ar << present;
    if (present) ar << *value;
}
template <class Archive, class T>
void load(Archive& ar, std::optional<T>& value, const unsigned int /*version*/) {
    bool present = false;
    ar >> present;
    if (!present) {
        value.reset();
        return;
    }
    T inner{};
    ar >> inner;
    value = std::move(inner);
}
template <class Archive, class T>
void serialize(Archive& ar, std::optional<T>& value, const unsigned int version) {
    split_free(ar, value, version);
}

template <class T>
struct implementation_level_impl<const std::optional<T>> {
    using tag = mpl::integral_c_tag;
    using type = mpl::int_<object_serializable>;
    BOOST_STATIC_CONSTANT(int, value = type::value);
};
template <class T>
struct tracking_level_impl<const std::optional<T>> {
    using tag = mpl::integral_c_tag;
    using type = mpl::int_<track_never>;
    BOOST_STATIC_CONSTANT(int, value = type::value);
};

template <class Archive>
void serialize(Archive& ar, chordkv::chord::Peer& p, const unsigned int /*version*/) {
    ar& p.id& p.address;
}

template <class Archive>
void serialize(Archive&, chordkv::chord::Ping&, const unsigned int) {}
template <class Archive>
void serialize(Archive&, chordkv::chord::Pong&, const unsigned int) {}
template <class Archive>
void serialize(Archive&, chordkv::chord::GetNeighbors&, const unsigned int) {}
template <class Archive>
void serialize(Archive& ar, chordkv::chord::Neighbors& m, const unsigned int /*version*/) {
    ar& m.predecessor& m.successors;
}
template <class Archive>
void serialize(Archive& ar, chordkv::chord::FindNext& m, const unsigned int /*version*/) {
    ar& m.target;
}
template <class Archive>
void serialize(Archive& ar, chordkv::chord::FindNextReply& m, const unsigned int /*version*/) {
    ar& m.done& m.peers;
}
template <class Archive>
void serialize(Archive&, chordkv::chord::Notify&, const unsigned int) {}
template <class Archive>
void serialize(Archive& ar, chordkv::chord::Leave& m, const unsigned int /*version*/) {
    ar& m.predecessor& m.successors;
}
template <class Archive>
void serialize(Archive&, chordkv::chord::LeaveAck&, const unsigned int) {}

}  // namespace boost::serialization

// Plain field concatenation: no class id, version or tracking bytes for these types.
#define CHORDKV_WIRE_STRUCT(T)                                               \
    BOOST_CLASS_IMPLEMENTATION(T, boost::serialization::object_serializable) \
    BOOST_CLASS_TRACKING(T, boost::serialization::track_never)

CHORDKV_WIRE_STRUCT(chordkv::chord::NodeId)
CHORDKV_WIRE_STRUCT(chordkv::chord::Peer)
CHORDKV_WIRE_STRUCT(std::vector<chordkv::chord::Peer>)
CHORDKV_WIRE_STRUCT(chordkv::chord::Ping)
CHORDKV_WIRE_STRUCT(chordkv::chord::Pong)
CHORDKV_WIRE_STRUCT(chordkv::chord::GetNeighbors)
CHORDKV_WIRE_STRUCT(chordkv::chord::Neighbors)
CHORDKV_WIRE_STRUCT(chordkv::chord::FindNext)
CHORDKV_WIRE_STRUCT(chordkv::chord::FindNextReply)
CHORDKV_WIRE_STRUCT(chordkv::chord::Notify)
CHORDKV_WIRE_STRUCT(chordkv::chord::Leave)
CHORDKV_WIRE_STRUCT(chordkv::chord::LeaveAck)
