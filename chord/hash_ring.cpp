#include "chord/hash_ring.hpp"

#include <algorithm>

namespace chordkv::chord {

NodeId HashRing::point_id(std::string_view name, std::uint32_t index) {
    std::string label;
    label.reserve(name.size() + 11);
    label.append(name);
    label.push_back('#');
    label.append(std::to_string(index));
    return NodeId::hash(label);
}

Status HashRing::add(std::string name, std::uint32_t weight) {
    if (weight == 0 || weight > weight_max) {
        return Status(Errc::invalid_argument, "weight must be in 1.." + std::to_string(weight_max) +
                                                  ", got " + std::to_string(weight));
    }
    std::vector<NodeId> points;
    points.reserve(weight);
    for (std::uint32_t i = 0; i < weight; ++i) points.push_back(point_id(name, i));
    return add_points(std::move(name), points);
}

Status HashRing::add(std::string name, const std::vector<NodeId>& points) {
    if (points.empty() || points.size() > weight_max) {
        return Status(Errc::invalid_argument,
                      "a node needs 1.." + std::to_string(weight_max) + " points");
    }
    std::vector<NodeId> sorted = points;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
        return Status(Errc::invalid_argument, "duplicate point id for node '" + name + "'");
    }
    return add_points(std::move(name), points);
}

Status HashRing::add_points(std::string name, const std::vector<NodeId>& points) {
    if (name.empty()) return Status(Errc::invalid_argument, "empty node name");
    if (weights_.count(name) > 0) {
        return Status(Errc::already_exists, "node '" + name + "' is already on the ring");
    }
    const auto index = static_cast<std::uint32_t>(names_.size());
    weights_.emplace(name, static_cast<std::uint32_t>(points.size()));
    names_.push_back(std::move(name));
    points_.reserve(points_.size() + points.size());
    for (const NodeId& id : points) points_.push_back(Point{id, index});
    sort_points();
    return {};
}

Status HashRing::remove(std::string_view name) {
    auto it = weights_.find(name);
    if (it == weights_.end()) {
        return Status(Errc::not_found, "node '" + std::string(name) + "' is not on the ring");
    }
    weights_.erase(it);
    const auto gone =
        static_cast<std::uint32_t>(std::find(names_.begin(), names_.end(), name) - names_.begin());
    names_.erase(names_.begin() + gone);
    points_.erase(std::remove_if(points_.begin(), points_.end(),
                                 [gone](const Point& p) { return p.node == gone; }),
                  points_.end());
    for (Point& p : points_) {
        if (p.node > gone) --p.node;
    }
    return {};
}

void HashRing::clear() {
    points_.clear();
    names_.clear();
    weights_.clear();
}

void HashRing::sort_points() {
    std::sort(points_.begin(), points_.end(), [this](const Point& a, const Point& b) {
        if (a.id != b.id) return a.id < b.id;
        return names_[a.node] < names_[b.node];
    });
}

std::size_t HashRing::successor_index(const NodeId& id) const {
    auto it = std::lower_bound(points_.begin(), points_.end(), id,
                               [](const Point& p, const NodeId& k) { return p.id < k; });
    return it == points_.end() ? 0 : static_cast<std::size_t>(it - points_.begin());
}

Result<std::string> HashRing::owner(std::string_view key) const {
    return owner_of(NodeId::hash(key));
}

Result<std::string> HashRing::owner_of(const NodeId& id) const {
    if (points_.empty()) return Result<std::string>(Errc::empty_ring);
    return names_[points_[successor_index(id)].node];
}

Result<NodeId> HashRing::successor_point(const NodeId& id) const {
    if (points_.empty()) return Result<NodeId>(Errc::empty_ring);
    return points_[successor_index(id)].id;
}

Result<std::vector<std::string>> HashRing::preference_list(std::string_view key,
                                                           std::size_t n) const {
    return preference_list_of(NodeId::hash(key), n);
}

Result<std::vector<std::string>> HashRing::preference_list_of(const NodeId& id,
                                                              std::size_t n) const {
    using R = Result<std::vector<std::string>>;
    if (points_.empty()) return R(Errc::empty_ring);
    if (n == 0) return R(Errc::invalid_argument, "preference list length must be at least 1");
    const std::size_t want = std::min(n, names_.size());
    std::vector<std::string> out;
    out.reserve(want);
    std::vector<bool> seen(names_.size(), false);
    const std::size_t start = successor_index(id);
    // One lap at most: after it every node has been seen.
    for (std::size_t step = 0; step < points_.size() && out.size() < want; ++step) {
        const Point& p = points_[(start + step) % points_.size()];
        if (!seen[p.node]) {
            seen[p.node] = true;
            out.push_back(names_[p.node]);
        }
    }
    return out;
}

}  // namespace chordkv::chord
