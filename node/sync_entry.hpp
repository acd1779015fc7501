// Conversions between the wire's SyncEntry and the store's Entry, shared by replica
// maintenance (repair.cpp) and the handoff of a leaving process (handoff.cpp). Internal to
// the node library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "chord/node_id.hpp"
#include "net/data.hpp"
#include "storage/key_store.hpp"

namespace chordkv::detail {

// Bytes of values per sync batch (soft: a batch holds at least one entry). With one value at
// the 16 MiB limit a batch still fits a TCP frame (kTcpPayloadBytesMax).
inline constexpr std::size_t kSyncBatchBytesMax = 32 * 1024;

// Both move the key and value: a batch is converted once, on its way in or out.
inline storage::Entry to_entry(net::SyncEntry&& e) {
    const chord::NodeId id = chord::NodeId::hash(e.key);
    return storage::Entry{
        id, std::move(e.key),
        storage::Record{e.record.version, e.record.tombstone, std::move(e.record.value)}};
}

inline net::SyncEntry to_sync(storage::Entry&& e) {
    return net::SyncEntry{std::move(e.key), net::WireRecord{e.record.version, e.record.tombstone,
                                                            std::move(e.record.value)}};
}

inline std::vector<net::SyncEntry> to_sync(std::vector<storage::Entry>&& entries) {
    std::vector<net::SyncEntry> out;
    out.reserve(entries.size());
    for (auto& e : entries) out.push_back(to_sync(std::move(e)));
    return out;
}

// A ReplicateBatchRequest built once and encoded for each send (PeerPool's MakeFrame stamps
// that send's request id), so a batch sent to several holders is not copied per holder.
inline std::shared_ptr<net::ReplicateBatchRequest> shared_batch(std::vector<net::SyncEntry> entries,
                                                                net::SyncPurpose purpose) {
    return std::make_shared<net::ReplicateBatchRequest>(
        net::ReplicateBatchRequest{0, std::move(entries), static_cast<std::uint8_t>(purpose)});
}

// An ArcDigest as SyncDigestReply carries it: 32 bytes of hash and 8 bytes (big-endian) of
// count per bucket.
inline std::string pack_digest_hashes(const storage::ArcDigest& d) {
    std::string out;
    out.reserve(32 * d.buckets.size());
    for (const auto& h : d.buckets) out.append(reinterpret_cast<const char*>(h.data()), h.size());
    return out;
}

inline std::string pack_digest_counts(const storage::ArcDigest& d) {
    std::string out;
    out.reserve(8 * d.counts.size());
    for (std::uint64_t c : d.counts) {
        for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(c >> shift));
    }
    return out;
}

// The per-bucket counts of a packed digest (pack_digest_counts); a trailing partial count is
// ignored.
inline std::vector<std::uint64_t> unpack_digest_counts(const std::string& counts) {
    std::vector<std::uint64_t> out;
    out.reserve(counts.size() / 8);
    for (std::size_t i = 0; i + 8 <= counts.size(); i += 8) {
        std::uint64_t c = 0;
        for (std::size_t j = 0; j < 8; ++j)
            c = (c << 8) | static_cast<unsigned char>(counts[i + j]);
        out.push_back(c);
    }
    return out;
}

// The buckets in which a peer's digest (`hashes`, `counts` as packed above) differs from
// `ours`; nullopt when the peer's digest has another number of buckets.
inline std::optional<std::vector<std::size_t>> differing_buckets(const storage::ArcDigest& ours,
                                                                 const std::string& hashes,
                                                                 const std::string& counts) {
    const std::size_t n = ours.buckets.size();
    if (hashes.size() != 32 * n || counts.size() != 8 * n || ours.counts.size() != n) {
        return std::nullopt;
    }
    const std::string mine = pack_digest_hashes(ours);
    const std::string mine_counts = pack_digest_counts(ours);
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < n; ++i) {
        if (mine.compare(32 * i, 32, hashes, 32 * i, 32) != 0 ||
            mine_counts.compare(8 * i, 8, counts, 8 * i, 8) != 0) {
            out.push_back(i);
        }
    }
    return out;
}

}  // namespace chordkv::detail
