// Pieces shared by the fuzz targets and the seed corpus generator (make_corpus.cpp).
//
// Fuzz inputs are read front to back with ByteReader, and make_corpus.cpp writes its seeds with
// the put_* helpers below, so a seed is a readable recipe of the operations it drives. (libFuzzer's
// FuzzedDataProvider takes integers from the end of the input, which a generator cannot easily
// write.) A read past the end yields zeros and empty strings: every input is valid.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace chordkv::fuzz {

class ByteReader {
public:
    ByteReader(const std::uint8_t* data, std::size_t size)
        : bytes_(reinterpret_cast<const char*>(data), size) {}

    bool empty() const noexcept { return at_ >= bytes_.size(); }

    std::uint8_t u8() noexcept { return empty() ? 0 : static_cast<std::uint8_t>(bytes_[at_++]); }
    // Big-endian.
    std::uint16_t u16() noexcept {
        const std::uint16_t high = u8();
        return static_cast<std::uint16_t>((high << 8) | u8());
    }
    // The next `n` bytes, or fewer when the input ends first.
    std::string_view bytes(std::size_t n) noexcept {
        const std::string_view out = bytes_.substr(std::min(at_, bytes_.size()), n);
        at_ += out.size();
        return out;
    }
    // Everything not yet read.
    std::string_view rest() noexcept { return bytes(bytes_.size()); }

private:
    std::string_view bytes_;
    std::size_t at_ = 0;
};

inline void put_u8(std::string& out, std::uint8_t v) {
    out.push_back(static_cast<char>(v));
}
inline void put_u16(std::string& out, std::uint16_t v) {
    put_u8(out, static_cast<std::uint8_t>(v >> 8));
    put_u8(out, static_cast<std::uint8_t>(v & 0xff));
}
// A u16 length, then the bytes (ByteReader: `bytes(u16())`). Precondition: bytes.size() < 2^16.
inline void put_sized(std::string& out, std::string_view bytes) {
    put_u16(out, static_cast<std::uint16_t>(bytes.size()));
    out.append(bytes);
}

// The cluster key of the keyed modes (net/codec.hpp MAC policy). Fixed, so seeds made with it
// by make_corpus.cpp verify in the fuzzers.
inline const std::string& cluster_key() {
    static const std::string key = "chordkv-fuzz-cluster-key-0123456789abcdef";
    return key;
}

// The fuzzers' fixed "now" on the wall clock, in milliseconds since the Unix epoch
// (2024-01-01); seeds stamp their keyed frames near it.
inline constexpr std::int64_t kNowMs = 1704067200000;

// A property the code under test promised and broke: report it and abort, which libFuzzer
// records as a crash with the input that caused it.
inline void require(bool holds, const char* what) {
    if (holds) return;
    std::fprintf(stderr, "fuzz check failed: %s\n", what);
    std::abort();
}

}  // namespace chordkv::fuzz
