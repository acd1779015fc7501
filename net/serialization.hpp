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
// Include this header, not <boost/serialization/vector.hpp> alone, wherever chord structs are
// serialized: the implementation levels declared here change their byte layout.
#pragma once

#include <boost/predef/other/endian.h>

#include <boost/archive/basic_archive.hpp>
#include <boost/archive/binary_iarchive_impl.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/serialization/level.hpp>
#include <boost/serialization/split_free.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/tracking.hpp>
#include <boost/serialization/vector.hpp>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
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

// A read-only streambuf over bytes the caller keeps alive; knows how many are left.
class SpanStreambuf final : public std::streambuf {
public:
    explicit SpanStreambuf(std::string_view bytes) {
        // std::streambuf wants char*; this buffer has no put area and never writes through it.
        char* begin = const_cast<char*>(bytes.data());
        setg(begin, begin, begin + bytes.size());
    }
    std::size_t remaining() const noexcept { return static_cast<std::size_t>(egptr() - gptr()); }
};

// A write-only streambuf that appends everything to a std::string.
class StringSinkStreambuf final : public std::streambuf {
public:
    explicit StringSinkStreambuf(std::string& out) : out_(out) {}

protected:
    std::streamsize xsputn(const char* s, std::streamsize n) override {
        out_.append(s, static_cast<std::size_t>(n));
        return n;
    }
    int_type overflow(int_type ch) override {
        if (!traits_type::eq_int_type(ch, traits_type::eof())) {
            out_.push_back(traits_type::to_char_type(ch));
        }
        return traits_type::not_eof(ch);
    }

private:
    std::string& out_;
};

// Thrown inside BoundedIarchive when a declared length or a value is out of bounds; caught by
// decode_payload, never seen outside this header and codec.cpp.
class PayloadBoundsError final : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Boost's binary input archive with the allocation guards described at the top of this file.
// Reads from a SpanStreambuf; flags are always no_header | no_codecvt. Use it through
// decode_payload; constructing one directly means catching its exceptions yourself.
class BoundedIarchive final
    : public boost::archive::binary_iarchive_impl<BoundedIarchive, char, std::char_traits<char>> {
    using Base =
        boost::archive::binary_iarchive_impl<BoundedIarchive, char, std::char_traits<char>>;
    using Primitive =
        boost::archive::basic_binary_iprimitive<BoundedIarchive, char, std::char_traits<char>>;

public:
    BoundedIarchive(SpanStreambuf& source, const PayloadLimits& limits);

    // Bytes not yet consumed.
    std::size_t remaining() const noexcept { return source_.remaining(); }

private:
    friend class boost::archive::detail::interface_iarchive<BoundedIarchive>;
    friend class boost::archive::basic_binary_iarchive<BoundedIarchive>;
    friend class boost::archive::load_access;
    friend Primitive;
    friend Base;

    template <class T>
    void load_override(T& t) {
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

namespace detail {

inline constexpr unsigned kArchiveFlags =
    boost::archive::no_header | boost::archive::no_codecvt | boost::archive::no_tracking;

// Runs `read(archive)` over `payload` with every exception contained, then requires that the
// whole payload was consumed. Errors: malformed_message naming what went wrong.
template <class Read>
Status run_decoder(std::string_view payload, const PayloadLimits& limits, Read&& read) noexcept {
    try {
        SpanStreambuf source(payload);
        BoundedIarchive archive(source, limits);
        std::forward<Read>(read)(archive);
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

// Appends the archive of `value` to `out`. Throws only std::bad_alloc.
template <class T>
void append_payload(std::string& out, const T& value) {
    StringSinkStreambuf sink(out);
    boost::archive::binary_oarchive archive(sink, detail::kArchiveFlags);
    archive << value;
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
