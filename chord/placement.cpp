#include "chord/placement.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "chord/hash_ring.hpp"

namespace chordkv::chord {

namespace {

struct Point {
    NodeId id;
    std::size_t process;
};

// An arc's neighbourhood: this many vnodes on either side of it.
constexpr std::size_t kNeighbourhood = 4;

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
    // The ring without this process's old vnodes, its processes numbered.
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
    std::vector<NodeId> out;
    std::set<NodeId> taken;
    for (const auto& point : points) taken.insert(point.id);
    const auto fill_with_sha1 = [&] {
        for (std::uint32_t i = 0; out.size() < count; ++i) {
            const NodeId id = HashRing::point_id(name, i);
            if (taken.insert(id).second) out.push_back(id);
        }
        return out;
    };
    const std::size_t n = points.size();
    const std::size_t processes = weight.size();
    if (n == 0 || count == 0) return fill_with_sha1();

    // Arcs, shares, and what each process over its target gives (in total, the joiner's share).
    const auto prev = [&](std::size_t i) { return (i + n - 1) % n; };
    std::vector<double> length(n);
    std::vector<double> share(processes, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        length[i] = ring_share(points[prev(i)].id, points[i].id);
        share[points[i].process] += length[i];
    }
    double total_weight = count;
    for (double w : weight) total_weight += w;
    const double joiner = count / total_weight;
    std::vector<double> give(processes, 0.0);
    double excess = 0;
    for (std::size_t p = 0; p < processes; ++p) {
        give[p] = std::max(0.0, share[p] - weight[p] / total_weight);
        excess += give[p];
    }
    if (excess <= 0) return fill_with_sha1();

    // Cuts per process in proportion to what it gives (largest remainder); a process left
    // without a cut gives nothing, and the others make up for it.
    std::vector<std::uint32_t> cuts(processes, 0);
    std::vector<std::pair<double, std::size_t>> remainder;
    std::uint32_t assigned = 0;
    for (std::size_t p = 0; p < processes; ++p) {
        const double exact = count * give[p] / excess;
        cuts[p] = static_cast<std::uint32_t>(exact);
        assigned += cuts[p];
        remainder.emplace_back(-(exact - cuts[p]), p);
    }
    std::sort(remainder.begin(), remainder.end());
    for (std::size_t r = 0; assigned < count; ++r, ++assigned) ++cuts[remainder[r].second];
    double giving = 0;
    for (std::size_t p = 0; p < processes; ++p) giving += cuts[p] > 0 ? give[p] : 0;
    for (std::size_t p = 0; p < processes; ++p) {
        give[p] = cuts[p] > 0 ? give[p] * joiner / giving : 0;
    }

    // Which arcs of each process to cut: those inside a run first, then those whose
    // neighbourhood holds the fewest processes, then the longest; the longest alone when the
    // preferred ones are too short to give the process's share.
    struct Arc {
        bool run;
        std::size_t diversity;
        double length;
        std::size_t at;
    };
    std::vector<std::vector<Arc>> arcs(processes);
    for (std::size_t i = 0; i < n; ++i) {
        std::set<std::size_t> near;
        for (std::size_t d = 0; d <= 2 * kNeighbourhood; ++d) {
            near.insert(
                points[(i + d + (kNeighbourhood / n + 1) * n - kNeighbourhood) % n].process);
        }
        arcs[points[i].process].push_back(
            {points[prev(i)].process == points[i].process, near.size(), length[i], i});
    }
    const auto longest_first = [](const Arc& a, const Arc& b) {
        return a.length != b.length ? a.length > b.length : a.at < b.at;
    };
    std::uint32_t next_index = 0;
    for (std::size_t p = 0; p < processes; ++p) {
        if (cuts[p] == 0) continue;
        std::vector<Arc> mine = arcs[p];
        std::sort(mine.begin(), mine.end(), [&](const Arc& a, const Arc& b) {
            if (a.run != b.run) return a.run;
            if (a.diversity != b.diversity) return a.diversity < b.diversity;
            return longest_first(a, b);
        });
        const std::size_t chosen = std::min<std::size_t>(cuts[p], mine.size());
        mine.resize(chosen);
        double sum = 0;
        for (const auto& arc : mine) sum += arc.length;
        if (0.999 * sum < give[p]) {
            mine = arcs[p];
            std::sort(mine.begin(), mine.end(), longest_first);
            mine.resize(chosen);
            sum = 0;
            for (const auto& arc : mine) sum += arc.length;
        }
        // More cuts than arcs (a joiner with more vnodes than the process has): the longest
        // arcs are cut more than once, the joiner's share of each split between its cuts.
        std::sort(mine.begin(), mine.end(), longest_first);
        std::vector<std::uint32_t> per_arc(mine.size(), 1);
        for (std::uint32_t extra = 0; extra < cuts[p] - chosen; ++extra) {
            ++per_arc[extra % mine.size()];
        }
        for (std::size_t a = 0; a < mine.size(); ++a) {
            const Arc& arc = mine[a];
            const double x = std::min(give[p] * arc.length / sum, 0.999 * arc.length);
            const NodeId& from = points[prev(arc.at)].id;
            for (std::uint32_t m = 1; m <= per_arc[a]; ++m) {
                const NodeId id =
                    cut_at(from, x * m / per_arc[a], HashRing::point_id(name, next_index++));
                // Outside the arc only when it is under 2^-64 of the ring: left to SHA-1.
                if (in_open(id, from, points[arc.at].id) && taken.insert(id).second) {
                    out.push_back(id);
                }
            }
        }
    }
    return fill_with_sha1();
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
