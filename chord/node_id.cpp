#include "chord/node_id.hpp"

#include <openssl/evp.h>

#include <cassert>
#include <memory>
#include <stdexcept>

namespace chordkv::chord {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

// SHA-1 fetched once: EVP_sha1() makes OpenSSL 3 look the implementation up again on every
// digest, which was 60% of hash()'s time (bench: 462 ns per short key, 161 ns with the
// implementation and a per-thread context kept). A fetched EVP_MD is immutable and shared by
// all threads; each thread keeps its own context.
const EVP_MD* sha1() {
    static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
    return md;
}

struct MdCtxFree {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

NodeId NodeId::hash(std::string_view data) {
    thread_local const std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    Bytes out{};
    unsigned int len = 0;
    // These fail only on allocation failure or a broken OpenSSL installation, which is not
    // an expected, recoverable condition.
    const EVP_MD* md = sha1();
    if (md == nullptr || !ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != kBytes) {
        throw std::runtime_error("OpenSSL SHA-1 failed");
    }
    return NodeId(out);
}

std::optional<NodeId> NodeId::from_hex(std::string_view hex) {
    if (hex.size() != 2 * kBytes) return std::nullopt;
    Bytes out{};
    for (std::size_t i = 0; i < kBytes; ++i) {
        const int hi = hex_value(hex[2 * i]);
        const int lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return NodeId(out);
}

std::optional<NodeId> NodeId::from_bytes(std::string_view raw) {
    if (raw.size() != kBytes) return std::nullopt;
    Bytes out{};
    std::memcpy(out.data(), raw.data(), kBytes);
    return NodeId(out);
}

NodeId NodeId::from_uint64(std::uint64_t v) {
    Bytes out{};
    for (int i = 0; i < 8; ++i) {
        out[kBytes - 1 - i] = static_cast<std::uint8_t>(v >> (8 * i));
    }
    return NodeId(out);
}

NodeId NodeId::max() {
    Bytes out;
    out.fill(0xff);
    return NodeId(out);
}

std::string NodeId::to_hex() const {
    return short_hex(2 * kBytes);
}

std::string NodeId::short_hex(int digits) const {
    std::string out;
    out.reserve(static_cast<std::size_t>(digits));
    for (int i = 0; i < digits && i < static_cast<int>(2 * kBytes); ++i) {
        const std::uint8_t b = bytes_[static_cast<std::size_t>(i / 2)];
        out.push_back(kHexDigits[(i % 2 == 0) ? (b >> 4) : (b & 0x0f)]);
    }
    return out;
}

std::uint64_t NodeId::high64() const noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < 8; ++i) v = v << 8 | bytes_[i];
    return v;
}

NodeId NodeId::add_pow2(int i) const {
    assert(i >= 0 && i < kBits);
    Bytes addend{};
    addend[kBytes - 1 - static_cast<std::size_t>(i / 8)] = static_cast<std::uint8_t>(1u << (i % 8));
    return *this + NodeId(addend);
}

NodeId operator+(const NodeId& a, const NodeId& b) {
    NodeId::Bytes out{};
    unsigned carry = 0;
    for (std::size_t i = NodeId::kBytes; i-- > 0;) {
        const unsigned sum = unsigned{a.bytes_[i]} + unsigned{b.bytes_[i]} + carry;
        out[i] = static_cast<std::uint8_t>(sum);
        carry = sum >> 8;
    }
    return NodeId(out);  // the final carry falls off: arithmetic modulo 2^160
}

NodeId operator-(const NodeId& a, const NodeId& b) {
    NodeId::Bytes out{};
    int borrow = 0;
    for (std::size_t i = NodeId::kBytes; i-- > 0;) {
        int diff = int{a.bytes_[i]} - int{b.bytes_[i]} - borrow;
        borrow = diff < 0 ? 1 : 0;
        out[i] = static_cast<std::uint8_t>(diff + (borrow << 8));
    }
    return NodeId(out);  // a final borrow wraps: arithmetic modulo 2^160
}

NodeId NodeId::next() const {
    return *this + from_uint64(1);
}
NodeId NodeId::prev() const {
    return *this - from_uint64(1);
}

double ring_share(const NodeId& a, const NodeId& b) {
    if (a == b) return 1.0;
    const NodeId d = distance(a, b);
    double share = 0.0;
    double scale = 1.0;
    for (std::size_t i = 0; i < NodeId::kBytes; ++i) {
        scale /= 256.0;
        share += d.bytes()[i] * scale;
    }
    return share;
}

}  // namespace chordkv::chord
