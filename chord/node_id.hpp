// NodeId: a point on the 2^160 identifier ring (SHA-1 width, as in the Chord paper).
//
// Stored big-endian, so byte order == numeric order == ring order starting at 0. All arithmetic
// is modulo 2^160. Interval predicates follow the Chord paper's notation and treat the
// degenerate interval whose ends are equal as the whole ring:
//
//     in_open(x, a, b)       x ∈ (a, b)    a == b: every x except a
//     in_open_closed(x, a, b) x ∈ (a, b]    a == b: every x
//     in_closed_open(x, a, b) x ∈ [a, b)    a == b: every x
//
//             0
//         .-'''-.        (a, b] with a > b wraps past zero:
//       /    b    \        a ──► ... 2^160-1, 0, ... ──► b
//      |     ▲     |
//       \    a    /
//         '-...-'
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace chordkv::chord {

class NodeId {
public:
    static constexpr std::size_t kBytes = 20;
    static constexpr int kBits = 160;
    using Bytes = std::array<std::uint8_t, kBytes>;

    constexpr NodeId() : bytes_{} {}
    explicit constexpr NodeId(const Bytes& bytes) : bytes_(bytes) {}

    // SHA-1 of `data` (OpenSSL). Key id = hash(key bytes); vnode id = hash("host:port#i").
    static NodeId hash(std::string_view data);
    // Exactly 40 hex digits, either case. nullopt on any other input.
    static std::optional<NodeId> from_hex(std::string_view hex);
    // The 20 bytes of `raw` taken as a big-endian number; nullopt unless raw.size() == 20.
    static std::optional<NodeId> from_bytes(std::string_view raw);
    // Small integers, for tests and the simulator: the value v (< 2^64).
    static NodeId from_uint64(std::uint64_t v);
    static NodeId max();  // 2^160 - 1

    // 40 lowercase hex digits.
    std::string to_hex() const;
    // First `digits` hex digits, for logs.
    std::string short_hex(int digits = 8) const;
    const Bytes& bytes() const noexcept { return bytes_; }
    // The top 64 bits, for cheap bucketing and share-of-ring computations.
    std::uint64_t high64() const noexcept;

    // this + 2^i mod 2^160, for 0 <= i < 160 (finger i starts here).
    NodeId add_pow2(int i) const;
    friend NodeId operator+(const NodeId& a, const NodeId& b);
    friend NodeId operator-(const NodeId& a, const NodeId& b);
    // this + 1 and this - 1, modulo 2^160.
    NodeId next() const;
    NodeId prev() const;

    friend bool operator==(const NodeId& a, const NodeId& b) {
        return std::memcmp(a.bytes_.data(), b.bytes_.data(), kBytes) == 0;
    }
    friend bool operator!=(const NodeId& a, const NodeId& b) { return !(a == b); }
    friend bool operator<(const NodeId& a, const NodeId& b) {
        return std::memcmp(a.bytes_.data(), b.bytes_.data(), kBytes) < 0;
    }
    friend bool operator>(const NodeId& a, const NodeId& b) { return b < a; }
    friend bool operator<=(const NodeId& a, const NodeId& b) { return !(b < a); }
    friend bool operator>=(const NodeId& a, const NodeId& b) { return !(a < b); }

private:
    Bytes bytes_;
};

// Clockwise distance from `from` to `to`: (to - from) mod 2^160. distance(a, a) == 0.
inline NodeId distance(const NodeId& from, const NodeId& to) {
    return to - from;
}

// x ∈ (a, b) on the ring; a == b means the whole ring except a.
inline bool in_open(const NodeId& x, const NodeId& a, const NodeId& b) {
    if (a < b) return a < x && x < b;
    if (b < a) return a < x || x < b;
    return x != a;
}

// x ∈ (a, b]; a == b means the whole ring.
inline bool in_open_closed(const NodeId& x, const NodeId& a, const NodeId& b) {
    return x == b || in_open(x, a, b);
}

// x ∈ [a, b); a == b means the whole ring.
inline bool in_closed_open(const NodeId& x, const NodeId& a, const NodeId& b) {
    return x == a || in_open(x, a, b);
}

// Fraction of the ring covered by the arc (a, b]; the whole ring (a == b) is 1.0.
double ring_share(const NodeId& a, const NodeId& b);

}  // namespace chordkv::chord

template <>
struct std::hash<chordkv::chord::NodeId> {
    std::size_t operator()(const chordkv::chord::NodeId& id) const noexcept {
        // SHA-1 output is uniform, so any 8 bytes make a good hash.
        return static_cast<std::size_t>(id.high64());
    }
};
