// HashRing: the local consistent-hash ring that clients, tools and tests use to know where keys
// live, in the manner of ketama-style rings (python-continuum, hash_ring).
//
// Each physical node (named by its address, "host:port") owns `weight` points on the 2^160
// ring; point i of node `name` sits at SHA-1("<name>#<i>") — the same id a chordd vnode takes by
// default, so a HashRing built from a cluster's addresses and vnode counts agrees with the real
// ring. A node may also be added with explicit point ids (a view learned from a live ring).
//
// owner(key) = the node of the first point at or clockwise after SHA-1(key) (Chord's
// successor(k)). preference_list(key, n) = the next n *distinct* physical nodes clockwise from
// there: the owner and the nodes that hold its replicas.
//
// Lookups are O(log V) binary searches over the sorted points (V = total points); add and remove
// re-sort, O(V log V). Not thread-safe: readers may share a const HashRing, a writer needs
// exclusive access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "chord/node_id.hpp"
#include "chord/result.hpp"

namespace chordkv::chord {

class HashRing {
public:
    // Default id of point `index` of node `name`: SHA-1("<name>#<index>").
    static NodeId point_id(std::string_view name, std::uint32_t index);

    // Adds `name` with `weight` points (weight >= 1). Errors: already_exists when the name is
    // on the ring; invalid_argument for an empty name or a weight of 0 or above weight_max.
    Status add(std::string name, std::uint32_t weight);
    // Adds `name` with the given point ids (a non-empty list of distinct ids). Same errors.
    Status add(std::string name, const std::vector<NodeId>& points);
    // Removes `name` and all its points. Error: not_found when the name is not on the ring.
    Status remove(std::string_view name);
    void clear();

    bool contains(std::string_view name) const { return weights_.count(std::string(name)) > 0; }
    std::size_t node_count() const noexcept { return weights_.size(); }
    std::size_t point_count() const noexcept { return points_.size(); }
    bool empty() const noexcept { return points_.empty(); }

    // The node that owns `key` (bytes hashed with SHA-1). Error: empty_ring.
    Result<std::string> owner(std::string_view key) const;
    // The node that owns ring position `id`. Error: empty_ring.
    Result<std::string> owner_of(const NodeId& id) const;
    // The point (vnode id) that owns `id`: successor(id). Error: empty_ring.
    Result<NodeId> successor_point(const NodeId& id) const;
    // The owner of `key` followed by the next distinct nodes clockwise, at most n of them (fewer
    // when the ring has fewer nodes). Errors: empty_ring; invalid_argument when n == 0.
    Result<std::vector<std::string>> preference_list(std::string_view key, std::size_t n) const;
    Result<std::vector<std::string>> preference_list_of(const NodeId& id, std::size_t n) const;

    // Every point, in ring order, with the name of the node it belongs to.
    struct Point {
        NodeId id;
        std::uint32_t node;  // index into names()
    };
    const std::vector<Point>& points() const noexcept { return points_; }
    const std::vector<std::string>& names() const noexcept { return names_; }

    static constexpr std::uint32_t weight_max = 1u << 16;

private:
    // Index into points_ of successor(id); requires a non-empty ring.
    std::size_t successor_index(const NodeId& id) const;
    Status add_points(std::string name, const std::vector<NodeId>& points);
    void sort_points();

    std::vector<Point> points_;       // sorted by (id, name): ties broken by name
    std::vector<std::string> names_;  // node index -> name
    std::map<std::string, std::uint32_t, std::less<>> weights_;  // name -> number of points
};

}  // namespace chordkv::chord
