#include "node/vnode_ids.hpp"

#include <string>

#include "chord/hash_ring.hpp"

namespace chordkv {

Result<std::vector<chord::NodeId>> load_or_create_vnode_ids(storage::KeyStore& store,
                                                            std::string_view advertise,
                                                            std::uint32_t vnodes) {
    using R = Result<std::vector<chord::NodeId>>;
    if (vnodes == 0) return R(Errc::invalid_argument, "a node needs at least one vnode");

    auto stored = store.get_meta(kMetaVnodeIds);
    if (stored) {
        const std::string& raw = *stored;
        if (raw.empty() || raw.size() % chord::NodeId::kBytes != 0) {
            return R(Errc::corruption, "stored vnode ids have length " +
                                           std::to_string(raw.size()) +
                                           ", not a positive multiple of 20");
        }
        std::vector<chord::NodeId> ids;
        for (std::size_t at = 0; at < raw.size(); at += chord::NodeId::kBytes) {
            ids.push_back(*chord::NodeId::from_bytes(
                std::string_view(raw).substr(at, chord::NodeId::kBytes)));
        }
        if (ids.size() != vnodes) {
            return R(Errc::invalid_argument,
                     "the data dir holds " + std::to_string(ids.size()) + " vnodes but " +
                         std::to_string(vnodes) +
                         " were asked for; start with the same vnode count or a new data dir");
        }
        return ids;
    }
    if (stored.code() != Errc::not_found) return R(stored.error());

    std::vector<chord::NodeId> ids;
    std::string raw;
    for (std::uint32_t i = 0; i < vnodes; ++i) {
        ids.push_back(chord::HashRing::point_id(advertise, i));
        const auto& bytes = ids.back().bytes();
        raw.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    storage::WriteBatch batch;
    batch.put_meta(kMetaVnodeIds, raw);
    batch.put_meta(kMetaAdvertise, advertise);
    if (auto status = store.write(batch); !status) return R(status.error());
    return ids;
}

}  // namespace chordkv
