#include "tests/sim/checkers.hpp"

#include <algorithm>
#include <sstream>
#include <unordered_map>
#include <utility>

namespace chordkv::sim {
namespace {

using chord::MemberState;
using chord::NodeId;
using chord::Peer;
using chord::RingState;

std::string list_text(const std::vector<Peer>& peers) {
    std::string out = "[";
    for (std::size_t i = 0; i < peers.size(); ++i) {
        if (i > 0) out += ", ";
        out += describe(peers[i]);
    }
    return out + "]";
}

std::string id_list_text(const std::vector<const Peer*>& peers) {
    std::string out = "[";
    for (std::size_t i = 0; i < peers.size(); ++i) {
        if (i > 0) out += ", ";
        out += describe(*peers[i]);
    }
    return out + "]";
}

// Collects at most `max` messages; the last slot says how many were left out.
class Violations {
public:
    explicit Violations(std::size_t max) : max_(max) {}
    bool full() const { return out_.size() >= max_; }
    void add(std::string message) {
        if (out_.size() + 1 < max_) {
            out_.push_back(std::move(message));
        } else if (out_.size() + 1 == max_) {
            out_.push_back("... more violations not listed");
        }
    }
    std::vector<std::string> take() { return std::move(out_); }

private:
    std::size_t max_;
    std::vector<std::string> out_;
};

// The live members among `states`, sorted by id (ties keep input order).
std::vector<const RingState*> sorted_members(const StateRefs& states) {
    std::vector<const RingState*> members;
    members.reserve(states.size());
    for (const RingState* s : states) {
        if (s->state == MemberState::member) members.push_back(s);
    }
    std::stable_sort(members.begin(), members.end(), [](const RingState* a, const RingState* b) {
        return a->self.id < b->self.id;
    });
    return members;
}

}  // namespace

StateRefs refs(const std::vector<RingState>& states) {
    StateRefs out;
    out.reserve(states.size());
    for (const RingState& s : states) out.push_back(&s);
    return out;
}

std::string describe(const Peer& peer) {
    return peer.address + "/" + peer.id.short_hex();
}

// --- oracle -----------------------------------------------------------------------------

Oracle::Oracle(std::vector<NodeId> live) : ids_(std::move(live)) {
    std::sort(ids_.begin(), ids_.end());
    ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
}

Oracle Oracle::of(const StateRefs& states) {
    std::vector<NodeId> live;
    live.reserve(states.size());
    for (const RingState* s : states) {
        if (s->state == MemberState::member) live.push_back(s->self.id);
    }
    return Oracle(std::move(live));
}

bool Oracle::contains(const NodeId& id) const {
    return std::binary_search(ids_.begin(), ids_.end(), id);
}

const NodeId& Oracle::successor(const NodeId& target) const {
    auto it = std::lower_bound(ids_.begin(), ids_.end(), target);
    return it == ids_.end() ? ids_.front() : *it;
}

std::string check_lookup(const Oracle& oracle, const NodeId& target,
                         const chord::LookupResult& result) {
    if (oracle.empty()) return "no live vnode, yet the lookup named " + describe(result.owner);
    const NodeId& expected = oracle.successor(target);
    std::ostringstream out;
    if (result.owner.id != expected) {
        out << "lookup(" << target.short_hex() << ") answered " << describe(result.owner)
            << ", successor is " << expected.short_hex();
    } else if (result.replicas.empty() || result.replicas.front().id != expected) {
        out << "lookup(" << target.short_hex() << ") replicas " << list_text(result.replicas)
            << " do not start with the owner " << expected.short_hex();
    }
    return out.str();
}

// --- ideal state ------------------------------------------------------------------------

std::vector<std::string> check_ideal(const StateRefs& states, std::size_t successors,
                                     std::size_t violations_max) {
    Violations v(violations_max);
    for (const RingState* s : states) {
        if (s->state == MemberState::member || s->state == MemberState::left) continue;
        v.add(describe(s->self) + " is " + chord::member_state_name(s->state) + ", not a member");
        if (v.full()) return v.take();
    }
    const std::vector<const RingState*> members = sorted_members(states);
    const std::size_t n = members.size();
    if (n == 0) {
        v.add("no member vnode");
        return v.take();
    }
    for (std::size_t k = 1; k < n; ++k) {
        if (members[k]->self.id == members[k - 1]->self.id) {
            v.add(describe(members[k - 1]->self) + " and " + describe(members[k]->self) +
                  " share an id");
            if (v.full()) return v.take();
        }
    }
    const std::size_t length = n == 1 ? 1 : std::min(successors, n - 1);
    std::vector<const Peer*> expected;
    for (std::size_t k = 0; k < n && !v.full(); ++k) {
        const RingState& s = *members[k];
        expected.clear();
        for (std::size_t j = 1; j <= length; ++j) expected.push_back(&members[(k + j) % n]->self);
        bool same = s.successors.size() == expected.size();
        for (std::size_t j = 0; same && j < expected.size(); ++j) {
            same = s.successors[j].id == expected[j]->id;
        }
        if (!same) {
            v.add(describe(s.self) + " has successors " + list_text(s.successors) + ", expected " +
                  id_list_text(expected));
            if (v.full()) break;
        }
        if (n == 1) {
            if (s.predecessor && s.predecessor->id != s.self.id) {
                v.add(describe(s.self) + " is alone but has predecessor " +
                      describe(*s.predecessor));
            }
            continue;
        }
        const Peer& previous = members[(k + n - 1) % n]->self;
        if (!s.predecessor) {
            v.add(describe(s.self) + " has no predecessor, expected " + describe(previous));
        } else if (s.predecessor->id != previous.id) {
            v.add(describe(s.self) + " has predecessor " + describe(*s.predecessor) +
                  ", expected " + describe(previous));
        }
    }
    return v.take();
}

std::vector<std::string> check_ideal(const std::vector<RingState>& states, std::size_t successors,
                                     std::size_t violations_max) {
    return check_ideal(refs(states), successors, violations_max);
}

// --- Zave's invariants ------------------------------------------------------------------

const char* invariant_name(Invariant invariant) {
    switch (invariant) {
        case Invariant::at_least_one_ring:
            return "AtLeastOneRing";
        case Invariant::at_most_one_ring:
            return "AtMostOneRing";
        case Invariant::ordered_ring:
            return "OrderedRing";
        case Invariant::connected_appendages:
            return "ConnectedAppendages";
        case Invariant::ordered_successor_lists:
            return "OrderedSuccessorLists";
        case Invariant::no_duplicates:
            return "NoDuplicates";
    }
    return "?";
}

std::size_t InvariantReport::total() const {
    std::size_t sum = 0;
    for (std::size_t c : violations) sum += c;
    return sum;
}

std::size_t InvariantReport::always_total() const {
    std::size_t sum = 0;
    for (Invariant i : kAlwaysInvariants) sum += count(i);
    return sum;
}

InvariantReport check_invariants(const StateRefs& states, std::size_t messages_max) {
    InvariantReport report;
    auto violate = [&](Invariant which, const std::string& what) {
        ++report.violations[static_cast<std::size_t>(which)];
        if (report.messages.size() < messages_max) {
            report.messages.push_back(std::string(invariant_name(which)) + ": " + what);
        }
    };

    const std::vector<const RingState*> members = sorted_members(states);
    const std::size_t n = members.size();
    report.members = n;
    if (n == 0) return report;  // nothing is on a ring, so nothing is wrong with one
    std::unordered_map<NodeId, std::size_t> index;
    index.reserve(n * 2);
    for (std::size_t k = 0; k < n; ++k) index.emplace(members[k]->self.id, k);

    // Per-list invariants, and each member's best successor (first live entry).
    constexpr std::size_t kNone = static_cast<std::size_t>(-1);
    std::vector<std::size_t> best(n, kNone);
    for (std::size_t k = 0; k < n; ++k) {
        const RingState& s = *members[k];
        const auto& list = s.successors;
        bool duplicate = false;
        for (std::size_t i = 0; i < list.size() && !duplicate; ++i) {
            if (list[i].id == s.self.id && list.size() > 1) duplicate = true;
            for (std::size_t j = i + 1; j < list.size() && !duplicate; ++j) {
                duplicate = list[i].id == list[j].id;
            }
        }
        if (duplicate) {
            violate(Invariant::no_duplicates, describe(s.self) + " has " + list_text(list));
        }
        for (std::size_t i = 1; i < list.size(); ++i) {
            if (!(chord::distance(s.self.id, list[i - 1].id) <
                  chord::distance(s.self.id, list[i].id))) {
                violate(Invariant::ordered_successor_lists,
                        describe(s.self) + " has " + list_text(list));
                break;
            }
        }
        for (const Peer& p : list) {
            auto it = index.find(p.id);
            if (it != index.end()) {
                best[k] = it->second;
                break;
            }
        }
    }

    // Cycles of the best-successor graph (each member has at most one out-edge), and whether
    // each member reaches one. Iterative colouring keeps it O(N).
    enum : unsigned char { kUnseen, kOnPath, kDone };
    std::vector<unsigned char> colour(n, kUnseen);
    std::vector<std::size_t> ring_of(n, kNone);   // cycle number, for members on a cycle
    std::vector<char> reaches(n, 0);              // reaches some cycle
    std::vector<std::size_t> dead_end(n, kNone);  // else: the member without a live successor
    std::vector<std::vector<std::size_t>> rings;
    std::vector<std::size_t> path;
    for (std::size_t start = 0; start < n; ++start) {
        if (colour[start] != kUnseen) continue;
        path.clear();
        std::size_t at = start;
        while (at != kNone && colour[at] == kUnseen) {
            colour[at] = kOnPath;
            path.push_back(at);
            at = best[at];
        }
        char reached = 0;
        std::size_t end = kNone;
        if (at == kNone) {
            end = path.back();
        } else if (colour[at] == kOnPath) {
            // A new cycle: the path from `at` on.
            std::vector<std::size_t> cycle;
            for (auto it = std::find(path.begin(), path.end(), at); it != path.end(); ++it) {
                ring_of[*it] = rings.size();
                cycle.push_back(*it);
            }
            rings.push_back(std::move(cycle));
            reached = 1;
        } else {
            reached = reaches[at];
            end = dead_end[at];
        }
        for (std::size_t k : path) {
            colour[k] = kDone;
            reaches[k] = reached;
            dead_end[k] = end;
        }
    }
    report.rings = rings.size();
    for (const auto& r : rings) report.ring_members += r.size();

    if (rings.empty()) {
        violate(Invariant::at_least_one_ring,
                "no cycle among " + std::to_string(n) + " members' best successors");
    }
    if (rings.size() > 1) {
        std::ostringstream what;
        what << rings.size() << " rings, through";
        for (const auto& r : rings) what << " " << describe(members[r.front()]->self);
        for (std::size_t extra = 1; extra < rings.size(); ++extra) {
            violate(Invariant::at_most_one_ring, what.str());
        }
    }

    // OrderedRing: sorted by id, each ring member's best successor is the next ring member of
    // the same ring (the one-member ring points to itself).
    for (const auto& r : rings) {
        std::vector<std::size_t> sorted = r;
        std::sort(sorted.begin(), sorted.end());  // member indices are in id order
        for (std::size_t j = 0; j < sorted.size(); ++j) {
            const std::size_t k = sorted[j];
            const std::size_t next = sorted[(j + 1) % sorted.size()];
            if (best[k] != next) {
                violate(Invariant::ordered_ring,
                        describe(members[k]->self) + " -> " + describe(members[best[k]]->self) +
                            " skips ring member " + describe(members[next]->self));
            }
        }
    }

    for (std::size_t k = 0; k < n; ++k) {
        if (reaches[k]) continue;
        const std::size_t end = dead_end[k];
        violate(Invariant::connected_appendages,
                describe(members[k]->self) + " reaches no ring: " + describe(members[end]->self) +
                    " has no live successor in " + list_text(members[end]->successors));
    }
    return report;
}

}  // namespace chordkv::sim
