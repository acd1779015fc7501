#include "chord/placement.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

#include "chord/hash_ring.hpp"

namespace chordkv::chord {

namespace {

struct Point {
    NodeId id;
    std::size_t process;
};

// An arc's neighbourhood: this many vnodes on either side of it. The successor list's length
// and the other processes it should name come from PlacementOptions (defaults 8 and 2, those
// of ProtocolOptions::successors and NodeOptions::replicas - 1).
constexpr std::size_t kNeighbourhood = 4;

// prev + the fraction `x` of the ring, with the low 96 bits taken from `low` (a SHA-1).
NodeId cut_at(const NodeId& prev, double x, const NodeId& low) {
    const auto top = static_cast<std::uint64_t>(std::ldexp(x, 64));
    NodeId::Bytes bytes = low.bytes();
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<std::uint8_t>(top >> (56 - 8 * i));
    return prev + NodeId(bytes);
}

// The ring as it will be once the chosen arcs are cut: the n old vnodes, and a vnode of the
// joiner (process number `processes`) in front of each old vnode whose arc is cut. Slot 2i is
// that joiner vnode (present when arc i is cut), slot 2i + 1 the old vnode i:
//
//   slots   0    1    2    3    4    5   ...
//           J0?  A0   J1?  B1   J2?  A2  ...      a cut of arc 1 puts J1 between A0 and B1
//
// Cutting arc i changes only the successor lists of the `successors` vnodes in front of J_i,
// and adds J_i's own, so a cut is scored from its neighbourhood alone. A list should name
// `others` processes besides its own, fewer when fewer exist (the joiner makes `processes` + 1)
// or fit in it: none when a list is empty, one when it holds one vnode.
class CutRing {
public:
    CutRing(const std::vector<Point>& points, std::size_t processes,
            const PlacementOptions& options)
        : points_(points),
          cut_(points.size(), false),
          joiner_(processes),
          successors_(options.successors),
          others_(std::min({options.others, processes, options.successors})),
          named_(others_) {}

    bool cut(std::size_t i) const { return cut_[i]; }
    void set_cut(std::size_t i) {
        cut_[i] = true;
        ++cuts_;
    }

    // How many fewer successor lists name too few other processes once arc i is cut (negative
    // when J_i's own list is one of them).
    long gain(std::size_t i) {
        if (others_ == 0) return 0;  // R = 1, or no list: nothing to mend
        const long before = short_lists_before(i);
        cut_[i] = true;
        ++cuts_;
        const long after = short_lists_before(i) + (is_short(2 * i) ? 1 : 0);
        cut_[i] = false;
        --cuts_;
        return before - after;
    }

    // Processes among the vnodes kNeighbourhood either side of arc i, the joiner counted when
    // one of its cuts falls among them.
    std::size_t diversity(std::size_t i) const {
        const std::size_t n = points_.size();
        const std::size_t start = i + (kNeighbourhood / n + 1) * n - kNeighbourhood;
        std::size_t near[2 * kNeighbourhood + 2];
        std::size_t count = 0;
        const auto add = [&](std::size_t p) {
            if (std::find(near, near + count, p) == near + count) near[count++] = p;
        };
        for (std::size_t d = 0; d <= 2 * kNeighbourhood; ++d) {
            add(points_[(start + d) % n].process);
            if (d > 0 && cut_[(start + d) % n]) add(joiner_);
        }
        return count;
    }

    // The arcs whose gain or diversity a cut of arc i changes lie within this many of i: the
    // lists that reach J_i, and the neighbourhoods that hold it.
    std::size_t reach() const {
        return others_ == 0 ? kNeighbourhood : std::max(successors_, kNeighbourhood);
    }

private:
    std::size_t slots() const { return 2 * points_.size(); }
    bool present(std::size_t slot) const { return slot % 2 == 1 || cut_[slot / 2]; }
    std::size_t process(std::size_t slot) const {
        return slot % 2 == 1 ? points_[slot / 2].process : joiner_;
    }
    std::size_t next(std::size_t slot) const {
        do slot = (slot + 1) % slots();
        while (!present(slot));
        return slot;
    }
    std::size_t prev(std::size_t slot) const {
        do slot = (slot + slots() - 1) % slots();
        while (!present(slot));
        return slot;
    }
    std::size_t vnodes() const { return points_.size() + cuts_; }

    // Whether the successor list of the vnode in `slot` names fewer than others_ processes
    // other than its own.
    bool is_short(std::size_t slot) const {
        const std::size_t own = process(slot);
        std::size_t* const named = named_.data();
        std::size_t count = 0;
        const std::size_t length = std::min(successors_, vnodes() - 1);
        for (std::size_t j = 0, at = slot; j < length && count < others_; ++j) {
            at = next(at);
            const std::size_t p = process(at);
            if (p != own && std::find(named, named + count, p) == named + count) named[count++] = p;
        }
        return count < others_;
    }

    // Short lists among the vnodes in front of slot 2i (J_i's place), whose lists reach it.
    long short_lists_before(std::size_t i) const {
        long out = 0;
        const std::size_t length = std::min(successors_, vnodes() - (cut_[i] ? 1 : 0));
        for (std::size_t j = 0, at = 2 * i; j < length; ++j) {
            at = prev(at);
            out += is_short(at) ? 1 : 0;
        }
        return out;
    }

    const std::vector<Point>& points_;
    std::vector<bool> cut_;
    std::size_t cuts_ = 0;
    std::size_t joiner_;
    std::size_t successors_;
    std::size_t others_;
    // is_short's scratch: the other processes a list names so far (at most others_).
    mutable std::vector<std::size_t> named_;
};

}  // namespace

std::vector<NodeId> place_vnodes(const std::map<NodeId, std::string>& ring, std::uint32_t count,
                                 std::string_view name, const PlacementOptions& options) {
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

    // Which arcs to cut, one at a time over all the processes that give (each up to its number
    // of cuts): first the arc whose cut leaves the fewest successor lists naming too few
    // processes, then one inside a run, then one whose neighbourhood holds the fewest
    // processes (the joiner's cuts so far included), then the longest. After each cut the
    // arcs within reach of it are scored again: their lists and neighbourhoods changed.
    // A process whose chosen arcs are too short to give its share cuts its longest arcs
    // instead, and the others are chosen again around those.
    std::vector<std::vector<std::size_t>> owned(processes);
    for (std::size_t i = 0; i < n; ++i) owned[points[i].process].push_back(i);
    const auto longest_first = [&](std::size_t a, std::size_t b) {
        return length[a] != length[b] ? length[a] > length[b] : a < b;
    };
    const auto longest = [&](std::size_t p) {
        std::vector<std::size_t> arcs = owned[p];
        std::sort(arcs.begin(), arcs.end(), longest_first);
        arcs.resize(std::min<std::size_t>(cuts[p], arcs.size()));
        return arcs;
    };
    std::vector<bool> by_length(processes, false);
    std::vector<std::vector<std::size_t>> chosen(processes);
    for (bool again = true; again;) {
        CutRing plan(points, processes, options);
        std::vector<std::size_t> left(processes, 0);
        for (std::size_t p = 0; p < processes; ++p) {
            chosen[p].clear();
            if (cuts[p] == 0) continue;
            if (by_length[p]) {
                chosen[p] = longest(p);
                for (std::size_t i : chosen[p]) plan.set_cut(i);
            } else {
                left[p] = std::min<std::size_t>(cuts[p], owned[p].size());
            }
        }
        // Best first: (-gain, not in a run, diversity, -length, arc).
        using Score = std::tuple<long, bool, std::size_t, double, std::size_t>;
        std::vector<Score> score(n);
        std::set<Score> queue;
        const auto rescore = [&](std::size_t i) {
            if (plan.cut(i) || left[points[i].process] == 0) return;
            if (score[i] != Score{}) queue.erase(score[i]);  // {}: never scored
            score[i] = {-plan.gain(i), points[prev(i)].process != points[i].process,
                        plan.diversity(i), -length[i], i};
            queue.insert(score[i]);
        };
        for (std::size_t i = 0; i < n; ++i) rescore(i);
        while (!queue.empty()) {
            const std::size_t i = std::get<4>(*queue.begin());
            const std::size_t p = points[i].process;
            plan.set_cut(i);
            chosen[p].push_back(i);
            queue.erase(queue.begin());
            if (--left[p] == 0) {
                for (std::size_t j : owned[p]) queue.erase(score[j]);
            }
            const std::size_t reach = std::min(plan.reach(), n / 2);
            for (std::size_t d = 1; d <= reach; ++d) {
                rescore((i + d) % n);
                rescore((i + n - d) % n);
            }
        }
        again = false;
        for (std::size_t p = 0; p < processes; ++p) {
            double sum = 0;
            for (std::size_t i : chosen[p]) sum += length[i];
            if (!by_length[p] && cuts[p] > 0 && 0.999 * sum < give[p]) {
                by_length[p] = true;
                again = true;
            }
        }
    }
    std::uint32_t next_index = 0;
    for (std::size_t p = 0; p < processes; ++p) {
        if (cuts[p] == 0) continue;
        std::vector<std::size_t>& mine = chosen[p];
        double sum = 0;
        for (std::size_t i : mine) sum += length[i];
        // More cuts than arcs (a joiner with more vnodes than the process has): the longest
        // arcs are cut more than once, the joiner's share of each split between its cuts.
        std::sort(mine.begin(), mine.end(), longest_first);
        std::vector<std::uint32_t> per_arc(mine.size(), 1);
        for (std::size_t extra = 0; extra < cuts[p] - mine.size(); ++extra) {
            ++per_arc[extra % mine.size()];
        }
        for (std::size_t a = 0; a < mine.size(); ++a) {
            const std::size_t at = mine[a];
            const double x = std::min(give[p] * length[at] / sum, 0.999 * length[at]);
            const NodeId& from = points[prev(at)].id;
            for (std::uint32_t m = 1; m <= per_arc[a]; ++m) {
                const NodeId id =
                    cut_at(from, x * m / per_arc[a], HashRing::point_id(name, next_index++));
                // Outside the arc only when it is under 2^-64 of the ring: left to SHA-1.
                if (in_open(id, from, points[at].id) && taken.insert(id).second) {
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
