#include "chord/placement.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "chord/hash_ring.hpp"

namespace chordkv::chord {

namespace {

struct Point {
    NodeId id;
    std::size_t process;
};

// prev + the fraction `x` of the ring, with the low 96 bits taken from `low` (a SHA-1).
NodeId cut_at(const NodeId& prev, double x, const NodeId& low) {
    const auto top = static_cast<std::uint64_t>(std::ldexp(x, 64));
    NodeId::Bytes bytes = low.bytes();
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<std::uint8_t>(top >> (56 - 8 * i));
    return prev + NodeId(bytes);
}

}  // namespace

std::vector<NodeId> place_vnodes(const std::map<NodeId, std::string>& ring, std::uint32_t count,
                                 std::string_view name) {
    // The ring without this process's old vnodes, its processes numbered; `name` is the last.
    std::vector<Point> points;
    std::map<std::string_view, std::size_t> index;
    std::vector<double> weight;
    for (const auto& [id, process] : ring) {
        if (process == name) continue;
        auto [it, added] = index.emplace(process, weight.size());
        if (added) weight.push_back(0);
        ++weight[it->second];
        points.push_back({id, it->second});
    }
    const std::size_t self = weight.size();
    weight.push_back(count);

    std::vector<NodeId> out;
    std::vector<double> share(weight.size(), 0.0);
    double total_weight = 0;
    for (double w : weight) total_weight += w;
    std::vector<double> target;
    for (double w : weight) target.push_back(w / total_weight);
    const auto arc = [&](std::size_t i) {  // share of the arc that ends at points[i]
        return ring_share(points[(i + points.size() - 1) % points.size()].id, points[i].id);
    };
    for (std::size_t i = 0; i < points.size(); ++i) share[points[i].process] += arc(i);

    // Smallest cut worth making: well above the 2^-64 resolution of the top 64 bits.
    constexpr double kCutMin = 0x1p-48;
    for (std::uint32_t k = 0; k < count && !points.empty(); ++k) {
        const double need = target[self] - share[self];
        if (need <= 0) break;
        const double cap = 1.5 * need / (count - k);
        struct Cut {
            double gain;
            std::size_t at;
            double x;
        };
        std::optional<Cut> best;
        for (std::size_t i = 0; i < points.size(); ++i) {
            const std::size_t p = points[i].process;
            if (p == self) continue;
            const double length = arc(i);
            // Σ (share - target)² / target changes by a quadratic in x when x moves from p to
            // the joiner; its minimum is at x_best, clamped to what the arc and cap allow.
            const double over_p = (share[p] - target[p]) / target[p];
            const double over_self = (share[self] - target[self]) / target[self];
            const double x_best = (over_p - over_self) / (1 / target[p] + 1 / target[self]);
            const double x = std::min({x_best, 0.999 * length, cap});
            if (x < kCutMin) continue;
            const auto square = [](double v) { return v * v; };
            const double change =
                (square(share[p] - x - target[p]) - square(share[p] - target[p])) / target[p] +
                (square(share[self] + x - target[self]) - square(share[self] - target[self])) /
                    target[self];
            if (change < 0 && (!best || change < best->gain)) best = Cut{change, i, x};
        }
        if (!best) break;
        const NodeId& prev = points[(best->at + points.size() - 1) % points.size()].id;
        const NodeId id = cut_at(prev, best->x, HashRing::point_id(name, k));
        if (!in_open(id, prev, points[best->at].id)) break;  // cannot happen: x < the arc
        const double taken = ring_share(prev, id);
        share[points[best->at].process] -= taken;
        share[self] += taken;
        points.insert(points.begin() + static_cast<std::ptrdiff_t>(best->at), Point{id, self});
        out.push_back(id);
    }
    // Whatever was not placed by a cut falls where SHA-1 puts it (skipping ids in use).
    for (std::uint32_t i = 0; out.size() < count; ++i) {
        const NodeId id = HashRing::point_id(name, i);
        const bool used = ring.count(id) > 0 || std::find(out.begin(), out.end(), id) != out.end();
        if (!used) out.push_back(id);
    }
    return out;
}

std::map<std::string, double> ring_shares(const std::map<NodeId, std::string>& ring) {
    std::map<std::string, double> out;
    if (ring.empty()) return out;
    NodeId prev = std::prev(ring.end())->first;
    for (const auto& [id, process] : ring) {
        out[process] += ring_share(prev, id);
        prev = id;
    }
    return out;
}

}  // namespace chordkv::chord
