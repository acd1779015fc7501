#include "node/vnode_ids.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdexcept>
#include <string>

#include "chord/hash_ring.hpp"

namespace chordkv {

Result<std::vector<chord::NodeId>> load_vnode_ids(storage::KeyStore& store, std::uint32_t vnodes) {
    using R = Result<std::vector<chord::NodeId>>;
    auto stored = store.get_meta(kMetaVnodeIds);
    if (!stored) return R(stored.error());
    const std::string& raw = *stored;
    if (raw.empty() || raw.size() % chord::NodeId::kBytes != 0) {
        return R(Errc::corruption, "stored vnode ids have length " + std::to_string(raw.size()) +
                                       ", not a positive multiple of 20");
    }
    std::vector<chord::NodeId> ids;
    for (std::size_t at = 0; at < raw.size(); at += chord::NodeId::kBytes) {
        ids.push_back(
            *chord::NodeId::from_bytes(std::string_view(raw).substr(at, chord::NodeId::kBytes)));
    }
    if (ids.size() != vnodes) {
        return R(Errc::invalid_argument,
                 "the data dir holds " + std::to_string(ids.size()) + " vnodes but " +
                     std::to_string(vnodes) +
                     " were asked for; start with the same vnode count or a new data dir");
    }
    return ids;
}

Status store_vnode_ids(storage::KeyStore& store, std::string_view advertise,
                       const std::vector<chord::NodeId>& ids) {
    std::string raw;
    for (const auto& id : ids) {
        raw.append(reinterpret_cast<const char*>(id.bytes().data()), id.bytes().size());
    }
    storage::WriteBatch batch;
    batch.put_meta(kMetaVnodeIds, raw);
    batch.put_meta(kMetaAdvertise, advertise);
    return store.write(batch);
}

Result<std::vector<chord::NodeId>> load_or_create_vnode_ids(storage::KeyStore& store,
                                                            std::string_view advertise,
                                                            std::uint32_t vnodes) {
    using R = Result<std::vector<chord::NodeId>>;
    if (vnodes == 0) return R(Errc::invalid_argument, "a node needs at least one vnode");
    auto stored = load_vnode_ids(store, vnodes);
    if (stored || stored.code() != Errc::not_found) return stored;
    std::vector<chord::NodeId> ids;
    for (std::uint32_t i = 0; i < vnodes; ++i)
        ids.push_back(chord::HashRing::point_id(advertise, i));
    if (auto status = store_vnode_ids(store, advertise, ids); !status) return R(status.error());
    return ids;
}

namespace {

std::string cluster_mark(const std::string& cluster_key) {
    if (cluster_key.empty()) return "none";
    static constexpr std::string_view kLabel = "chordkv data dir";
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), cluster_key.data(), static_cast<int>(cluster_key.size()),
             reinterpret_cast<const unsigned char*>(kLabel.data()), kLabel.size(), out,
             &len) == nullptr) {
        throw std::runtime_error("OpenSSL HMAC-SHA256 failed");
    }
    return "hmac:" + std::string(reinterpret_cast<const char*>(out), len);
}

}  // namespace

Status check_cluster_mark(storage::KeyStore& store, const std::string& cluster_key) {
    const std::string mine = cluster_mark(cluster_key);
    auto stored = store.get_meta(kMetaClusterMark);
    if (!stored) {
        if (stored.code() != Errc::not_found) return Status(stored.error());
        return store.put_meta(kMetaClusterMark, mine);
    }
    if (*stored == mine) return {};
    const auto describe = [](const std::string& mark) {
        return mark == "none" ? std::string("no cluster key") : std::string("a cluster key");
    };
    std::string why =
        "it was written by a cluster with " + describe(*stored) + " and this process has ";
    why += *stored != "none" && mine != "none" ? "a different one" : describe(mine);
    return Status(Errc::invalid_argument,
                  "the data dir belongs to another cluster: " + why +
                      " (use a fresh --data-dir, or the cluster's own --cluster-key-file)");
}

}  // namespace chordkv
