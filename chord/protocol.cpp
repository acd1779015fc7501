#include "chord/protocol.hpp"

#include <algorithm>
#include <cassert>
#include <sstream>

namespace chordkv::chord {
namespace {

constexpr int kFingers = NodeId::kBits;

template <typename... Fs>
struct Overloaded : Fs... {
    using Fs::operator()...;
};
template <typename... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

bool contains_id(const std::vector<Peer>& peers, const NodeId& id) {
    return std::any_of(peers.begin(), peers.end(), [&](const Peer& p) { return p.id == id; });
}

}  // namespace

const char* message_name(const Message& m) {
    return std::visit(Overloaded{
                          [](const Ping&) { return "Ping"; },
                          [](const Pong&) { return "Pong"; },
                          [](const GetNeighbors&) { return "GetNeighbors"; },
                          [](const Neighbors&) { return "Neighbors"; },
                          [](const FindNext&) { return "FindNext"; },
                          [](const FindNextReply&) { return "FindNextReply"; },
                          [](const Notify&) { return "Notify"; },
                          [](const Leave&) { return "Leave"; },
                          [](const LeaveAck&) { return "LeaveAck"; },
                      },
                      m);
}

const char* member_state_name(MemberState state) {
    switch (state) {
        case MemberState::idle:
            return "idle";
        case MemberState::joining:
            return "joining";
        case MemberState::member:
            return "member";
        case MemberState::leaving:
            return "leaving";
        case MemberState::left:
            return "left";
    }
    return "unknown";
}

Protocol::Protocol(Peer self, ProtocolOptions options, std::mt19937_64& rng)
    : options_(options), rng_(rng), rpcs_(options.inflight_rpcs_max, options.jitter, rng) {
    assert(options_.successors >= 1);
    ring_.self = std::move(self);
    ring_.fingers.assign(kFingers, std::nullopt);
}

Protocol::~Protocol() = default;

// --- sending ----------------------------------------------------------------------------

void Protocol::send(Envelope e) {
    ++stats_.rpcs_sent;
    outbox_.push_back(std::move(e));
}

void Protocol::reply_to(const Envelope& request, Message body) {
    Envelope e;
    e.from = ring_.self;
    e.to_address = request.from.address;
    e.to_id = request.from.id;
    e.rpc_id = request.rpc_id;
    e.reply = true;
    e.body = std::move(body);
    outbox_.push_back(std::move(e));
}

RpcTracker::Policy Protocol::maintenance_policy() const {
    return RpcTracker::Policy{options_.rpc_timeout, options_.rpc_attempts};
}

RpcTracker::Policy Protocol::stabilize_policy() const {
    return RpcTracker::Policy{options_.rpc_timeout, options_.stabilize_attempts};
}

void Protocol::call(Time now, const std::string& address, std::optional<NodeId> id, Message body,
                    const RpcTracker::Policy& policy, RpcTracker::Callback done) {
    Envelope e;
    e.from = ring_.self;
    e.to_address = address;
    e.to_id = id;
    e.body = std::move(body);
    auto started = rpcs_.start(now, std::move(e), policy, done);
    if (!started) {
        // The in-flight bound is reached: the call completes at once with `busy`, so the
        // caller's state machine moves on instead of waiting forever.
        ++stats_.rpcs_rejected;
        if (done) done(now, Result<Envelope>(started.error()));
        return;
    }
    send(std::move(started).value());
}

void Protocol::call(Time now, const Peer& to, Message body, RpcTracker::Callback done) {
    call(now, to.address, to.id, std::move(body), maintenance_policy(), std::move(done));
}

Duration Protocol::jittered(Duration interval) {
    if (options_.jitter <= 0.0) return interval;
    std::uniform_real_distribution<double> spread(1.0 - options_.jitter, 1.0 + options_.jitter);
    return std::chrono::duration_cast<Duration>(interval * spread(rng_));
}

std::vector<Envelope> Protocol::take_outbox() {
    std::vector<Envelope> out;
    out.swap(outbox_);
    return out;
}

// --- lifecycle --------------------------------------------------------------------------

void Protocol::create(Time now) {
    assert(ring_.state == MemberState::idle);
    ring_.state = MemberState::member;
    ring_.successors = {ring_.self};
    ring_.predecessor.reset();
    stabilize_at_ = now + jittered(options_.stabilize_interval);
    fix_fingers_at_ = now + jittered(options_.fix_fingers_interval);
}

void Protocol::create(Time now, const std::vector<Peer>& members) {
    std::vector<Peer> sorted = members;
    std::sort(sorted.begin(), sorted.end(),
              [](const Peer& a, const Peer& b) { return a.id < b.id; });
    sorted.erase(std::unique(sorted.begin(), sorted.end(),
                             [](const Peer& a, const Peer& b) { return a.id == b.id; }),
                 sorted.end());
    const auto self = std::find_if(sorted.begin(), sorted.end(),
                                   [&](const Peer& p) { return p.id == ring_.self.id; });
    assert(self != sorted.end());
    create(now);
    const std::size_t n = sorted.size();
    if (n == 1) return;
    const std::size_t at = static_cast<std::size_t>(self - sorted.begin());
    std::vector<Peer> rest;
    for (std::size_t k = 2; k < n; ++k) rest.push_back(sorted[(at + k) % n]);
    adopt_successors(sorted[(at + 1) % n], rest);
    ring_.predecessor = sorted[(at + n - 1) % n];
}

void Protocol::join(Time now, const std::string& bootstrap_address, DoneCallback done) {
    if (ring_.state != MemberState::idle) {
        if (done) done(now, Status(Errc::invalid_argument, "join: the vnode is not idle"));
        return;
    }
    now_ = now;
    ring_.state = MemberState::joining;
    join_done_ = std::move(done);
    Lookup lookup;
    lookup.target = ring_.self.id;
    lookup.bootstrap_address = bootstrap_address;
    lookup.done = [this](Time t, Result<LookupResult> found) {
        on_join_found(t, std::move(found));
    };
    start_lookup(now, std::move(lookup));
}

void Protocol::on_join_found(Time now, Result<LookupResult> found) {
    auto fail = [this, now](Error error) {
        ring_.state = MemberState::idle;
        if (auto done = std::move(join_done_)) done(now, Status(std::move(error)));
    };
    if (!found) return fail(found.error());
    // s = successor(self). A vnode restarting with its old id may still be on the ring, in
    // which case the answer names the vnode itself: the next peer is its successor.
    std::optional<Peer> s;
    for (const Peer& p : found->replicas) {
        if (p.id != ring_.self.id) {
            s = p;
            break;
        }
    }
    if (!s) return fail(Error(Errc::unreachable, "join: the ring has no other member"));
    // Zave's join: fetch the successor's list at once; the successor must answer.
    call(now, *s, GetNeighbors{}, [this, s = *s](Time t, Result<Envelope> reply) {
        if (ring_.state != MemberState::joining) return;
        const Neighbors* n = reply ? std::get_if<Neighbors>(&reply->body) : nullptr;
        if (!n) {
            ring_.state = MemberState::idle;
            const bool leaving = dropped_leaver(t, reply);
            if (auto done = std::move(join_done_)) {
                done(t, leaving ? Status(Errc::unreachable, "join: the successor is leaving")
                        : reply ? Status(Errc::malformed_message, "join: unexpected reply")
                                : Status(reply.error()));
            }
            return;
        }
        ring_.state = MemberState::member;
        ring_.predecessor.reset();
        stabilize_at_ = t + jittered(options_.stabilize_interval);
        fix_fingers_at_ = t;
        adopt_successors(s, n->successors);
        // The lookup may have raced other joins: on_stabilize_reply walks back from s while
        // s's predecessor lies between us and s, then notifies the successor it settles on.
        on_stabilize_reply(t, s, *n);
        if (auto done = std::move(join_done_)) done(t, Status{});
    });
}

void Protocol::leave(Time now, DoneCallback done) {
    leave(now, {}, std::move(done));
}

void Protocol::leave(Time now, const std::vector<NodeId>& co_leaving, DoneCallback done) {
    now_ = now;
    if (ring_.state != MemberState::member) {
        if (done) done(now, Status(Errc::shutting_down, "leave: the vnode is not a member"));
        return;
    }
    ring_.state = MemberState::leaving;
    leave_done_ = std::move(done);
    leave_deadline_ = now + options_.leave_timeout;
    auto leaving = [&](const NodeId& id) {
        return id == ring_.self.id || left_recently(id) ||
               std::find(co_leaving.begin(), co_leaving.end(), id) != co_leaving.end();
    };
    // What the neighbours outside need: the successors that stay (the predecessor adopts them
    // in order, so the first is the first vnode after the whole run), and the predecessor
    // only when it stays (the successor does not adopt it anyway; it waits for a Notify).
    // It is also our answer to every request from now on (answer_leaving).
    Leave& notice = leave_notice_;
    notice = Leave{};
    for (const Peer& p : ring_.successors) {
        if (!leaving(p.id)) notice.successors.push_back(p);
    }
    if (ring_.predecessor && !leaving(ring_.predecessor->id)) {
        notice.predecessor = ring_.predecessor;
    }
    std::vector<Peer> told;
    auto tell = [&](const Peer& p) {
        // A neighbour that leaves with us needs nothing; the end of our run tells the outside.
        if (leaving(p.id) || contains_id(told, p.id)) return;
        told.push_back(p);
        ++leave_acks_pending_;
        call(now, p, notice, [this](Time t, Result<Envelope> reply) {
            if (ring_.state != MemberState::leaving) return;
            if (!reply) {
                finish_leave(t, Status(reply.error()));
                return;
            }
            if (--leave_acks_pending_ == 0) finish_leave(t, Status{});
        });
    };
    if (!ring_.successors.empty()) tell(ring_.successors.front());
    if (ring_.predecessor) tell(*ring_.predecessor);
    // Nobody to tell: alone on the ring, or inside a run of vnodes that all leave.
    if (leave_acks_pending_ == 0) finish_leave(now, Status{});
}

void Protocol::finish_leave(Time now, Status status) {
    if (ring_.state != MemberState::leaving) return;
    ring_.state = MemberState::left;
    leave_deadline_ = stabilize_at_ = fix_fingers_at_ = Time::max();
    // Lookups still running fail; their RPCs are cancelled below.
    auto running = std::move(lookups_);
    lookups_.clear();
    counted_lookups_ = 0;
    rpcs_.cancel_all(now, Errc::shutting_down);
    for (auto& [id, lookup] : running) {
        if (lookup.done) lookup.done(now, Result<LookupResult>(Errc::shutting_down));
    }
    if (auto done = std::move(leave_done_)) done(now, std::move(status));
}

// --- input ------------------------------------------------------------------------------

void Protocol::handle(Time now, const Envelope& in) {
    now_ = now;
    ++stats_.messages_received;
    if (in.to_id && *in.to_id != ring_.self.id) {
        ++stats_.messages_ignored;
        return;
    }
    if (in.reply) {
        if (ring_.state == MemberState::left || !rpcs_.complete(now, in)) {
            ++stats_.messages_ignored;
        }
        return;
    }
    if (in.from.id == ring_.self.id && in.from.address == ring_.self.address) {
        ++stats_.messages_ignored;  // our own request looped back: never answer ourselves
        return;
    }
    if (ring_.state == MemberState::leaving || ring_.state == MemberState::left) {
        answer_leaving(in);
        return;
    }
    on_request(now, in);
}

// A vnode that leaves — and one that has left, while its process is still up — answers every
// request with its Leave notice rather than as a member. Whoever asks (a neighbour whose Leave
// has not arrived yet, one that only heard of the vnode from a stale list, a vnode outside a
// run of co-leaving vnodes that never gets a Leave from the inner ones) learns at once that
// it is gone and where to go instead, and never adopts it: answering as a member would let
// it be adopted again and kept until failure detection dropped it.
void Protocol::answer_leaving(const Envelope& in) {
    if (std::holds_alternative<Leave>(in.body)) {
        reply_to(in, LeaveAck{});  // our own notice has gone out; nothing to change
        return;
    }
    if (std::holds_alternative<Ping>(in.body) || std::holds_alternative<GetNeighbors>(in.body) ||
        std::holds_alternative<FindNext>(in.body)) {
        reply_to(in, leave_notice_);
        return;
    }
    ++stats_.messages_ignored;  // one-way (Notify, pushed lists, hints) or a reply type
}

void Protocol::on_request(Time now, const Envelope& in) {
    // Idle and joining vnodes are not on the ring: they answer nothing, so that askers time
    // out and try someone who knows, and so that whoever still names the vnode from an earlier
    // life (its process restarted on its data dir, with the same id and address) finds it
    // dead. When they answered Ping (a successor's check of its predecessor), such a stale
    // entry could pass for alive, and a restarted process's vnodes could not rejoin for 30 s
    // and more (chord_cluster_script: 2 of 20 runs; docs/protocol.md).
    // (Leaving and left vnodes do not get here.)
    const bool serving = ring_.state == MemberState::member;
    std::visit(
        Overloaded{
            [&](const Ping&) {
                if (serving) reply_to(in, Pong{});
            },
            [&](const GetNeighbors&) {
                if (serving) reply_to(in, Neighbors{ring_.predecessor, ring_.successors});
            },
            [&](const FindNext& f) {
                if (serving) reply_to(in, find_next(f.target));
            },
            [&](const Notify&) {
                if (serving) rectify(now, in.from);
            },
            [&](const Leave& l) {
                if (serving) on_leave(now, in, l);
            },
            [&](const Neighbors& hint) {
                // Unsolicited, from our first successor: its new successor list
                // (push_successors), or a predecessor of its that lies between us
                // and it (send_hint).
                if (!serving) return;
                if (in.from.id != ring_.successors.front().id) return;
                if (!hint.successors.empty()) adopt_successors(in.from, hint.successors);
                if (stabilizing_) return;
                const auto& p = hint.predecessor;
                if (!p || p->id == ring_.self.id || !in_open(p->id, ring_.self.id, in.from.id)) {
                    return;
                }
                approach(now, *p, options_.successors);
            },
            [&](const auto&) { ++stats_.messages_ignored; },  // a reply type sent as request
        },
        in.body);
}

// --- lookups ----------------------------------------------------------------------------

FindNextReply Protocol::find_next(const NodeId& target) const {
    FindNextReply out;
    // Done when the target falls anywhere in our successor list: its owner is the first
    // successor at or after it. Not only (self, successor]: when the target's predecessor is
    // down, its own predecessors still answer from their lists (as in the Chord paper), so a
    // lookup whose last hop times out is not stranded — and most lookups save a hop.
    NodeId prev = ring_.self.id;
    for (std::size_t i = 0; i < ring_.successors.size(); ++i) {
        const Peer& s = ring_.successors[i];
        if (in_open_closed(target, prev, s.id)) {
            out.done = true;
            out.peers.assign(ring_.successors.begin() + static_cast<std::ptrdiff_t>(i),
                             ring_.successors.end());
            return out;
        }
        prev = s.id;
    }
    out.peers = closest_preceding_nodes(target, options_.lookup_candidates);
    return out;
}

std::vector<Peer> Protocol::closest_preceding_nodes(const NodeId& target, std::size_t count) const {
    // Candidates from fingers ∪ successor list that lie in (self, target), closest to the
    // target first. The successor list is included so that a lookup still progresses while
    // the fingers are empty or stale (correctness rests on successors, fingers are shortcuts).
    // A small sorted top-`count`, each distance computed once: this runs for every lookup step.
    struct Candidate {
        NodeId distance;
        const Peer* peer;
    };
    std::vector<Candidate> best;
    best.reserve(count + 1);
    const NodeId* last = nullptr;
    auto consider = [&](const Peer& p) {
        if (last && *last == p.id) return;  // consecutive fingers often repeat
        last = &p.id;
        if (!in_open(p.id, ring_.self.id, target)) return;
        const NodeId d = distance(p.id, target);
        if (best.size() == count && !(d < best.back().distance)) return;
        for (const Candidate& c : best) {
            if (c.peer->id == p.id) return;
        }
        auto at =
            std::upper_bound(best.begin(), best.end(), d,
                             [](const NodeId& x, const Candidate& c) { return x < c.distance; });
        best.insert(at, Candidate{d, &p});
        if (best.size() > count) best.pop_back();
    };
    for (int i = kFingers - 1; i >= 0; --i) {
        if (const auto& f = ring_.fingers[static_cast<std::size_t>(i)]) consider(*f);
    }
    for (const Peer& p : ring_.successors) consider(p);
    std::vector<Peer> out;
    out.reserve(best.size());
    for (const Candidate& c : best) out.push_back(*c.peer);
    return out;
}

void Protocol::lookup(Time now, const NodeId& target, LookupCallback done) {
    now_ = now;
    if (ring_.state != MemberState::member) {
        done(now, Result<LookupResult>(Errc::shutting_down, "lookup: the vnode is not a member"));
        return;
    }
    if (counted_lookups_ >= options_.lookups_max) {
        done(now, Result<LookupResult>(
                      Errc::busy, std::to_string(options_.lookups_max) + " lookups in flight"));
        return;
    }
    Lookup l;
    l.target = target;
    l.done = std::move(done);
    l.counted = true;
    start_lookup(now, std::move(l));
}

void Protocol::start_lookup(Time now, Lookup lookup) {
    ++stats_.lookups_started;
    if (lookup.counted) ++counted_lookups_;
    const std::uint64_t id = next_lookup_id_++;
    if (!lookup.bootstrap_address) {
        // The first step is local and free: our own table answers or names candidates.
        FindNextReply local = find_next(lookup.target);
        if (local.done) {
            lookups_.emplace(id, std::move(lookup));
            LookupResult r;
            r.owner = local.peers.front();
            r.replicas = std::move(local.peers);
            finish_lookup(now, id, std::move(r));
            return;
        }
        lookup.asked.push_back(ring_.self.id);
        add_candidates(lookup, local.peers);
    }
    lookups_.emplace(id, std::move(lookup));
    lookup_step(now, id);
}

void Protocol::add_candidates(Lookup& lookup, const std::vector<Peer>& peers) const {
    for (const Peer& p : peers) {
        if (p.id == lookup.target || p.id == ring_.self.id) continue;
        if (std::find(lookup.asked.begin(), lookup.asked.end(), p.id) != lookup.asked.end()) {
            continue;
        }
        if (contains_id(lookup.candidates, p.id)) continue;
        lookup.candidates.push_back(p);
    }
    const NodeId& target = lookup.target;
    std::sort(lookup.candidates.begin(), lookup.candidates.end(),
              [&](const Peer& a, const Peer& b) {
                  return distance(a.id, target) < distance(b.id, target);
              });
}

void Protocol::lookup_step(Time now, std::uint64_t id) {
    auto it = lookups_.find(id);
    if (it == lookups_.end()) return;
    Lookup& l = it->second;
    if (l.hops >= options_.lookup_hops_max) {
        finish_lookup(
            now, id,
            Result<LookupResult>(Errc::hops_exceeded,
                                 std::to_string(l.hops) + " hops for " + l.target.short_hex()));
        return;
    }
    Peer next;
    std::optional<NodeId> to_id;
    if (l.bootstrap_address) {
        next.address = *l.bootstrap_address;
        l.bootstrap_address.reset();
    } else {
        if (l.candidates.empty() && ring_.state == MemberState::member) {
            // Every candidate so far failed. Our own table has forgotten the ones that timed
            // out, so it now names the next-best live vnodes (our successors at worst).
            add_candidates(l, closest_preceding_nodes(l.target, options_.lookup_candidates));
        }
        if (l.candidates.empty()) {
            finish_lookup(now, id,
                          Result<LookupResult>(Errc::unreachable, "no live candidate left for " +
                                                                      l.target.short_hex()));
            return;
        }
        next = l.candidates.front();
        l.candidates.erase(l.candidates.begin());
        l.asked.push_back(next.id);
        to_id = next.id;
    }
    ++l.hops;
    ++stats_.lookup_hops;
    const RpcTracker::Policy policy{options_.lookup_hop_timeout, options_.lookup_hop_attempts};
    call(now, next.address, to_id, FindNext{l.target}, policy,
         [this, id, next](Time t, Result<Envelope> reply) {
             lookup_reply(t, id, next, std::move(reply));
         });
}

void Protocol::lookup_reply(Time now, std::uint64_t id, const Peer& asked, Result<Envelope> reply) {
    auto it = lookups_.find(id);
    if (it == lookups_.end()) return;
    Lookup& l = it->second;
    const FindNextReply* step = reply ? std::get_if<FindNextReply>(&reply->body) : nullptr;
    if (!step) {
        // The hop failed: forget the peer as a shortcut and fall back to the next-best. A hop
        // that answered with its Leave notice failed at once, not by a timeout.
        if (!dropped_leaver(now, reply)) {
            ++l.timeouts;
            ++stats_.lookup_timeouts;
            if (!asked.address.empty() && asked.id != NodeId()) forget(asked);
        }
        lookup_step(now, id);
        return;
    }
    if (step->done && !step->peers.empty()) {
        LookupResult r;
        r.owner = step->peers.front();
        r.replicas = step->peers;
        r.hops = l.hops;
        r.timeouts = l.timeouts;
        finish_lookup(now, id, std::move(r));
        return;
    }
    // Only candidates that are closer to the target than the node that named them make
    // progress; anything else is stale or hostile and is ignored.
    std::vector<Peer> closer;
    for (const Peer& p : step->peers) {
        if (in_open(p.id, reply->from.id, l.target)) closer.push_back(p);
    }
    add_candidates(l, closer);
    lookup_step(now, id);
}

void Protocol::finish_lookup(Time now, std::uint64_t id, Result<LookupResult> result) {
    auto it = lookups_.find(id);
    if (it == lookups_.end()) return;
    Lookup l = std::move(it->second);
    lookups_.erase(it);
    if (l.counted) --counted_lookups_;
    if (result) {
        result->hops = l.hops;
        result->timeouts = l.timeouts;
    } else {
        ++stats_.lookups_failed;
    }
    if (l.done) l.done(now, std::move(result));
}

// --- maintenance ------------------------------------------------------------------------

void Protocol::tick(Time now) {
    now_ = now;
    std::vector<Envelope> resend;
    rpcs_.expire(now, resend);
    stats_.rpc_timeouts = rpcs_.timeouts();
    stats_.rpc_retries = rpcs_.retries();
    for (auto& e : resend) send(std::move(e));
    if (now >= leave_deadline_) {
        finish_leave(now, Status(Errc::timed_out, "leave: neighbours did not acknowledge"));
    }
    if (ring_.state != MemberState::member) return;
    if (now >= stabilize_at_) {
        stabilize_at_ = now + jittered(options_.stabilize_interval);
        stabilize(now);
    }
    if (now >= fix_fingers_at_) {
        fix_fingers_at_ = now + jittered(options_.fix_fingers_interval);
        fix_fingers(now);
    }
    if (now >= merge_at_) {
        merge_at_ = now + jittered(options_.merge_interval);
        merge_probe(now);
    }
}

Time Protocol::next_deadline() const {
    // The maintenance timers run only while the vnode is a member: tick() does not advance
    // them otherwise, and a past deadline reported here would wake the owner in a busy loop.
    const bool maintaining = ring_.state == MemberState::member;
    return std::min({rpcs_.next_deadline(), maintaining ? stabilize_at_ : Time::max(),
                     maintaining ? fix_fingers_at_ : Time::max(),
                     maintaining ? merge_at_ : Time::max(), leave_deadline_});
}

void Protocol::adopt_successors(const Peer& first, const std::vector<Peer>& rest) {
    // successors = take(r, [first] + rest), cut where the list wraps back to self and without
    // duplicates: in a ring of N vnodes the list holds the next min(r, N-1).
    std::vector<Peer> list;
    list.reserve(options_.successors);
    list.push_back(first);
    for (const Peer& p : rest) {
        if (list.size() >= options_.successors) break;
        if (p.id == ring_.self.id) break;
        if (contains_id(list, p.id) || left_recently(p.id)) continue;
        // Keep the list ordered clockwise from self (OrderedSuccessorLists).
        if (!in_open(p.id, list.back().id, ring_.self.id)) break;
        list.push_back(p);
    }
    const bool changed = list.size() != ring_.successors.size() ||
                         !std::equal(list.begin(), list.end(), ring_.successors.begin(),
                                     [](const Peer& a, const Peer& b) { return a.id == b.id; });
    ring_.successors = std::move(list);
    if (changed) push_successors();
}

void Protocol::push_successors() {
    // Our predecessor builds its list from ours: push the change now rather than waiting for
    // its next stabilize, so a failure or join propagates r hops back in round trips. It
    // accepts the list only from its first successor, and stops pushing where a list no longer
    // changes, so a push travels at most r hops.
    const auto& pred = ring_.predecessor;
    if (ring_.state != MemberState::member || !pred || pred->id == ring_.self.id) return;
    auto push_to = [&](const Peer& to) {
        Envelope push;
        push.from = ring_.self;
        push.to_address = to.address;
        push.to_id = to.id;
        push.body = Neighbors{std::nullopt, ring_.successors};
        send(std::move(push));
    };
    push_to(*pred);
    // While the predecessor is suspect, the vnode that will likely replace it needs the list.
    if (pinging_predecessor_ && predecessor_candidate_) push_to(*predecessor_candidate_);
}

void Protocol::notify_successor() {
    const Peer& s = ring_.successors.front();
    if (s.id == ring_.self.id) return;
    Envelope e;
    e.from = ring_.self;
    e.to_address = s.address;
    e.to_id = s.id;
    e.body = Notify{};
    send(std::move(e));
}

void Protocol::stabilize(Time now) {
    if (stabilizing_) return;
    const Peer s = ring_.successors.front();
    if (s.id == ring_.self.id) {
        // Alone: a vnode that notified us is our successor as well, once it answers.
        if (!ring_.predecessor || ring_.predecessor->id == ring_.self.id) return;
        const std::uint64_t round = begin_round();
        const Peer p = *ring_.predecessor;
        call(now, p.address, p.id, GetNeighbors{}, stabilize_policy(),
             [this, p, round](Time t, Result<Envelope> reply) {
                 if (!end_round(round) || ring_.state != MemberState::member) return;
                 if (dropped_leaver(t, reply)) return;
                 const Neighbors* n = reply ? std::get_if<Neighbors>(&reply->body) : nullptr;
                 if (!n || ring_.successors.front().id != ring_.self.id) return;
                 adopt_successors(p, n->successors);
                 notify_successor();
             });
        return;
    }
    const std::uint64_t round = begin_round();
    call(now, s.address, s.id, GetNeighbors{}, stabilize_policy(),
         [this, s, round](Time t, Result<Envelope> reply) {
             if (!end_round(round) || ring_.state != MemberState::member) return;
             if (reply.code() == Errc::busy) return;  // our own overload says nothing about s
             if (dropped_leaver(t, reply)) return;    // continues with s's successors
             const Neighbors* n = reply ? std::get_if<Neighbors>(&reply->body) : nullptr;
             if (!n) {
                 successor_failed(t, s);
                 return;
             }
             on_stabilize_reply(t, s, *n);
         });
}

void Protocol::restart_stabilize(Time now) {
    if (ring_.state != MemberState::member) return;
    stabilizing_ = false;
    ++stabilize_round_;
    stabilize(now);
}

std::uint64_t Protocol::begin_round() {
    stabilizing_ = true;
    return ++stabilize_round_;
}

bool Protocol::end_round(std::uint64_t round) {
    if (round != stabilize_round_) return false;  // abandoned by restart_stabilize
    stabilizing_ = false;
    return true;
}

void Protocol::on_stabilize_reply(Time now, const Peer& s, const Neighbors& n) {
    // The list may have moved on while we waited (a Leave, a failure): only act on the answer
    // of the vnode that is still our first successor.
    if (ring_.successors.front().id != s.id) return;
    adopt_successors(s, n.successors);
    const auto& p = n.predecessor;
    if (!p || p->id == ring_.self.id || !in_open(p->id, ring_.self.id, s.id)) {
        notify_successor();
        return;
    }
    // s knows a vnode p between us and s: approach it (adopting only after it answers).
    approach(now, *p, options_.successors);
}

// Zave's stabilize adopts s.predecessor once it answers. When a vnode joined with a successor
// that was too far (its lookup raced other joins), the vnodes between it and the true
// successor are each one predecessor further back; walking back up to `steps_left` of them in
// one round — instead of one per stabilize period — lets a burst of joins converge in a few
// rounds rather than one round per joiner.
void Protocol::approach(Time now, const Peer& candidate, std::size_t steps_left) {
    if (left_recently(candidate.id)) {
        // It announced its leave; a neighbour that names it has not heard yet.
        notify_successor();
        return;
    }
    // A recently failed candidate gets one short attempt: if it is alive (its earlier
    // messages were lost) it is back in a round trip; if dead, this costs one timeout rather
    // than a full retry cycle during which stabilize waits.
    const RpcTracker::Policy policy =
        suspected(candidate.id) ? RpcTracker::Policy{options_.rpc_timeout, 1} : stabilize_policy();
    const std::uint64_t round = begin_round();
    call(now, candidate.address, candidate.id, GetNeighbors{}, policy,
         [this, candidate, steps_left, round](Time t, Result<Envelope> reply) {
             if (!end_round(round) || ring_.state != MemberState::member) return;
             if (dropped_leaver(t, reply)) {
                 notify_successor();
                 return;
             }
             const Neighbors* pn = reply ? std::get_if<Neighbors>(&reply->body) : nullptr;
             if (!pn) {
                 if (reply.code() != Errc::busy) forget(candidate);
                 notify_successor();
                 return;
             }
             if (!in_open(candidate.id, ring_.self.id, ring_.successors.front().id)) {
                 notify_successor();  // our successor moved meanwhile; keep it
                 return;
             }
             adopt_successors(candidate, pn->successors);
             const auto& pp = pn->predecessor;
             if (steps_left > 1 && pp && pp->id != ring_.self.id &&
                 in_open(pp->id, ring_.self.id, candidate.id)) {
                 approach(t, *pp, steps_left - 1);
                 return;
             }
             notify_successor();
         });
}

void Protocol::successor_failed(Time now, const Peer& s) {
    forget(s);
    remember_departed(now, s);
    auto& list = ring_.successors;
    list.erase(
        std::remove_if(list.begin(), list.end(), [&](const Peer& p) { return p.id == s.id; }),
        list.end());
    if (list.empty()) {
        // Every successor failed (more than r-1 neighbours at once). Fall back to the closest
        // vnode we still know clockwise — fingers, then the predecessor — and let stabilize
        // walk from there; alone only when nothing else is known.
        std::optional<Peer> best;
        auto consider = [&](const Peer& p) {
            if (p.id == ring_.self.id || p.id == s.id) return;
            if (!best || distance(ring_.self.id, p.id) < distance(ring_.self.id, best->id)) {
                best = p;
            }
        };
        for (const auto& f : ring_.fingers) {
            if (f) consider(*f);
        }
        if (ring_.predecessor) consider(*ring_.predecessor);
        list.push_back(best ? *best : ring_.self);
        push_successors();
        stabilize(now);
        return;
    }
    probe_successors(now);
}

// Failures come in runs (a crashed process takes all its vnodes; neighbours crash together),
// so after the first successor failed, ask every remaining successor at once and continue
// with the closest one that answers: a run of k dead successors costs one timeout, not k.
void Protocol::probe_successors(Time now) {
    struct Probe {
        std::vector<Peer> peers;
        std::vector<int> state;  // 0 pending, 1 answered, 2 failed
        std::vector<Neighbors> answers;
        bool done = false;
    };
    auto probe = std::make_shared<Probe>();
    probe->peers = ring_.successors;
    probe->state.assign(probe->peers.size(), 0);
    probe->answers.resize(probe->peers.size());
    const std::uint64_t round = begin_round();
    auto resolve = [this, probe, round](Time t) {
        if (probe->done) return;
        std::size_t first = 0;
        while (first < probe->peers.size() && probe->state[first] == 2) ++first;
        if (first < probe->peers.size() && probe->state[first] == 0) return;  // wait for it
        probe->done = true;
        if (!end_round(round) || ring_.state != MemberState::member) return;
        // Drop the successors that failed before the first live one.
        for (std::size_t i = 0; i < first; ++i) {
            const NodeId dead = probe->peers[i].id;
            forget(probe->peers[i]);
            auto& list = ring_.successors;
            list.erase(std::remove_if(list.begin(), list.end(),
                                      [&](const Peer& p) { return p.id == dead; }),
                       list.end());
        }
        if (first == probe->peers.size() || ring_.successors.empty()) {
            // None answered: fall back as for a lone failure.
            ring_.successors.push_back(probe->peers.back());
            successor_failed(t, probe->peers.back());
            return;
        }
        on_stabilize_reply(t, probe->peers[first], probe->answers[first]);
    };
    for (std::size_t i = 0; i < probe->peers.size(); ++i) {
        const Peer& peer = probe->peers[i];
        call(now, peer.address, peer.id, GetNeighbors{}, stabilize_policy(),
             [this, probe, i, resolve](Time t, Result<Envelope> reply) {
                 const Neighbors* n = reply ? std::get_if<Neighbors>(&reply->body) : nullptr;
                 // A leaving successor counts as failed and is not adopted again.
                 if (reply && std::holds_alternative<Leave>(reply->body)) {
                     remember_left(t, reply->from.id);
                 }
                 probe->state[i] = n ? 1 : 2;
                 if (n) probe->answers[i] = *n;
                 resolve(t);
             });
    }
}

void Protocol::rectify(Time now, const Peer& candidate) {
    // A Notify that a leaving vnode sent before its Leave may arrive after it.
    if (candidate.id == ring_.self.id || left_recently(candidate.id)) return;
    auto& pred = ring_.predecessor;
    if (!pred || pred->id == ring_.self.id || in_open(candidate.id, pred->id, ring_.self.id)) {
        // The old predecessor's successor pointer now skips the candidate: hint it (see below).
        if (pred && pred->id != ring_.self.id) send_hint(*pred, candidate);
        pred = candidate;
        // It builds its successor list from ours: send it now rather than at its next
        // stabilize (a list it fetched from us before may be older than our pushes since).
        push_successors();
        return;
    }
    if (pred->id == candidate.id) {
        pred = candidate;  // same vnode; its address may have changed
        return;
    }
    // The candidate is behind our predecessor: its successor pointer skips our predecessor.
    // Tell it now (it approaches the predecessor itself, adopting only after an answer) rather
    // than letting it find out one stabilize period later — after a burst of joins that turns
    // a chain of k misplaced vnodes from k periods into k round trips.
    // (Only once the predecessor answered our ping: a hint about a dead vnode would send the
    // candidate after it.) And it replaces our predecessor only if that one is dead.
    predecessor_candidate_ = candidate;
    if (pinging_predecessor_) return;
    pinging_predecessor_ = true;
    const Peer pinged = *pred;
    call(now, pinged, Ping{}, [this, pinged](Time t, Result<Envelope> reply) {
        pinging_predecessor_ = false;
        if (ring_.state != MemberState::member) return;
        auto replacement = std::move(predecessor_candidate_);
        predecessor_candidate_.reset();
        if (reply && std::holds_alternative<Leave>(reply->body)) {
            // It is leaving: the notifier that waited on this ping replaces it.
            predecessor_candidate_ = std::move(replacement);
            dropped_leaver(t, reply);
            predecessor_candidate_.reset();
            return;
        }
        if (reply) {
            // Alive: it stays, and the candidate learns that its successor pointer skips it.
            if (replacement && ring_.predecessor && ring_.predecessor->id == pinged.id) {
                send_hint(*replacement, pinged);
            }
            return;
        }
        if (reply.code() == Errc::busy) return;  // unknown: it stays
        forget(pinged);
        remember_departed(t, pinged);
        if (ring_.predecessor && ring_.predecessor->id == pinged.id) {
            ring_.predecessor = replacement;
        }
    });
}

void Protocol::send_hint(const Peer& to, const Peer& between) {
    Envelope hint;
    hint.from = ring_.self;
    hint.to_address = to.address;
    hint.to_id = to.id;
    hint.body = Neighbors{between, {}};
    send(std::move(hint));
}

void Protocol::fix_fingers(Time now) {
    if (fixing_finger_) return;
    const Peer& s = ring_.successors.front();
    // Fingers whose start lies in (self, successor] are the successor: no lookup needed. Walk
    // past them (at most one lap) to the next finger that needs a lookup.
    for (int scanned = 0; scanned < kFingers; ++scanned) {
        const int i = next_finger_;
        next_finger_ = (next_finger_ + 1) % kFingers;
        const NodeId start = ring_.self.id.add_pow2(i);
        if (s.id == ring_.self.id || in_open_closed(start, ring_.self.id, s.id)) {
            ring_.fingers[static_cast<std::size_t>(i)] = s;
            continue;
        }
        fixing_finger_ = true;
        Lookup l;
        l.target = start;
        l.done = [this, i](Time, Result<LookupResult> r) {
            fixing_finger_ = false;
            if (!r || ring_.state != MemberState::member) return;
            const Peer owner = r->owner;
            if (owner.id == ring_.self.id) return;
            // owner = successor(start_i), so every finger j >= i whose start lies in
            // [start_i, owner] has the same owner: set them all without more lookups.
            const NodeId reach = distance(ring_.self.id, owner.id);
            ring_.fingers[static_cast<std::size_t>(i)] = owner;
            for (int j = i + 1; j < kFingers; ++j) {
                if (reach < distance(ring_.self.id, ring_.self.id.add_pow2(j))) break;
                ring_.fingers[static_cast<std::size_t>(j)] = owner;
                next_finger_ = (j + 1) % kFingers;
            }
        };
        start_lookup(now, std::move(l));
        return;
    }
}

void Protocol::on_leave(Time now, const Envelope& in, const Leave& leave) {
    reply_to(in, LeaveAck{});
    drop_leaver(now, in.from, leave);
}

void Protocol::drop_leaver(Time now, const Peer& leaver, const Leave& leave) {
    forget(leaver);
    remember_left(now, leaver.id);
    if (ring_.predecessor && ring_.predecessor->id == leaver.id) {
        // Our predecessor leaves: its own predecessor will notify us once it has taken us as
        // successor; until then we have none (rectify accepts the first notifier) — unless a
        // notifier is already waiting on a ping of the leaver: it is the one.
        ring_.predecessor = std::move(predecessor_candidate_);
        predecessor_candidate_.reset();
    }
    auto& list = ring_.successors;
    const bool was_first = !list.empty() && list.front().id == leaver.id;
    if (was_first) {
        // Our successor leaves: continue with its successor list (which skips the vnodes that
        // leave with it, see leave()).
        std::vector<Peer> rest;
        for (const Peer& p : leave.successors) {
            if (p.id != leaver.id && !left_recently(p.id)) rest.push_back(p);
        }
        if (!rest.empty() && rest.front().id != ring_.self.id) {
            // Our list was built from the leaver's: the vnodes of its process that we had
            // between it and the first successor it names now, it skipped because they leave
            // with it (leave() tells only the ends of such a run). Remember them, so that a
            // neighbour still naming one (its Leave has not reached it yet) does not send us
            // after it.
            for (const Peer& p : list) {
                if (p.address == leaver.address && in_open(p.id, leaver.id, rest.front().id)) {
                    remember_left(now, p.id);
                }
            }
            const Peer first = rest.front();
            rest.erase(rest.begin());
            adopt_successors(first, rest);
        }
    }
    list.erase(
        std::remove_if(list.begin(), list.end(),
                       [&](const Peer& p) { return p.id == leaver.id || left_recently(p.id); }),
        list.end());
    if (list.empty()) list.push_back(ring_.self);
    // Ask the new first successor at once (its answer completes our list, and our Notify makes
    // us its predecessor), even if a round with the leaver is still in flight.
    if (was_first) restart_stabilize(now);
}

bool Protocol::dropped_leaver(Time now, const Result<Envelope>& reply) {
    const Leave* leave = reply ? std::get_if<Leave>(&reply->body) : nullptr;
    if (!leave) return false;
    if (ring_.state == MemberState::member) {
        drop_leaver(now, reply->from, *leave);
    } else {
        remember_left(now, reply->from.id);
    }
    return true;
}

void Protocol::remember_left(Time now, const NodeId& id) {
    if (id == ring_.self.id) return;
    const Time until = now + options_.left_memory;
    for (auto& [left, t] : left_) {
        if (left == id) {
            t = until;
            return;
        }
    }
    if (left_.size() >= kLeftMax) left_.erase(left_.begin());
    left_.emplace_back(id, until);
}

bool Protocol::left_recently(const NodeId& id) const {
    for (const auto& [left, until] : left_) {
        if (left == id && until > now_) return true;
    }
    return false;
}

void Protocol::forget(const Peer& peer) {
    for (auto& f : ring_.fingers) {
        if (f && f->id == peer.id) f.reset();
    }
    // Remember the failure for a while, so that neighbours who have not noticed it yet (and
    // still name the peer as their predecessor) do not send us after it again and again.
    if (suspected(peer.id)) return;
    if (suspects_.size() >= kSuspectsMax) suspects_.erase(suspects_.begin());
    suspects_.push_back({peer.id, now_ + options_.suspect_duration});
}

// --- ring merging -----------------------------------------------------------------------
//
// A partition (or a cut link) longer than failure detection leaves each side with a ring of
// its own: every vnode dropped the other side's vnodes, and nothing in Chord's maintenance
// ever contacts them again. So failed neighbours are remembered (merge_memory), and every
// merge_interval one of them is probed: a lookup of our own id, started at its address. Once
// it answers, its side names successor(self) as it sees it; when that vnode lies between us
// and our successor, our ring is missing it, and we approach it — the same verified step as
// stabilize (it must answer; nothing is adopted on the word of a third party). Notify and
// stabilize then splice the two rings together, vnode by vnode, from both sides.

void Protocol::remember_departed(Time now, const Peer& peer) {
    // Only failures: a vnode that left is not coming back to merge with.
    if (peer.id == ring_.self.id || left_recently(peer.id)) return;
    const Time until = now + options_.merge_memory;
    for (auto& [p, t] : departed_) {
        if (p.id == peer.id) {
            t = until;
            return;
        }
    }
    if (departed_.size() >= kDepartedMax) departed_.erase(departed_.begin());
    departed_.emplace_back(peer, until);
    if (merge_at_ == Time::max()) merge_at_ = now + jittered(options_.merge_interval);
}

void Protocol::merge_probe(Time now) {
    departed_.erase(std::remove_if(departed_.begin(), departed_.end(),
                                   [now](const auto& d) { return d.second <= now; }),
                    departed_.end());
    if (departed_.empty()) {
        merge_at_ = Time::max();
        return;
    }
    if (merging_) return;
    const Peer via = departed_[next_departed_++ % departed_.size()].first;
    merging_ = true;
    ++stats_.merge_probes;
    Lookup lookup;
    lookup.target = ring_.self.id;
    lookup.bootstrap_address = via.address;
    lookup.done = [this](Time t, Result<LookupResult> found) {
        merging_ = false;
        on_merge_found(t, std::move(found));
    };
    start_lookup(now, std::move(lookup));
}

void Protocol::on_merge_found(Time now, Result<LookupResult> found) {
    if (ring_.state != MemberState::member || !found) return;  // still away: probe again later
    std::optional<Peer> s;
    for (const Peer& p : found->replicas) {
        if (p.id != ring_.self.id) {
            s = p;
            break;
        }
    }
    if (!s) return;
    const Peer& ours = ring_.successors.front();
    // Agreement proves nothing lasting: once the two sides have partly merged, a lookup
    // started on the other side can be answered by a vnode of ours, which names our own
    // successor. Stopping the probes then (as this did) left a run of a cut-off process's
    // vnodes in a ring of their own for good. The memory expires after merge_memory instead.
    if (s->id == ours.id) return;
    if (stabilizing_ || !in_open(s->id, ring_.self.id, ours.id)) return;
    ++stats_.merges;
    approach(now, *s, options_.successors);
}

bool Protocol::suspected(const NodeId& id) const {
    for (const auto& [suspect, until] : suspects_) {
        if (suspect == id && until > now_) return true;
    }
    return false;
}

// --- checks -----------------------------------------------------------------------------

std::string Protocol::check_invariants() const {
    std::ostringstream out;
    const auto& list = ring_.successors;
    if (ring_.state == MemberState::member || ring_.state == MemberState::leaving) {
        if (list.empty()) out << "empty successor list; ";
        if (list.size() > options_.successors) out << "successor list longer than r; ";
    }
    for (std::size_t i = 0; i < list.size(); ++i) {
        if (list[i].id == ring_.self.id && list.size() > 1) out << "self in successor list; ";
        for (std::size_t j = i + 1; j < list.size(); ++j) {
            if (list[i].id == list[j].id) out << "duplicate " << list[i].id.short_hex() << "; ";
        }
        if (i > 0 && !in_open(list[i].id, list[i - 1].id, ring_.self.id)) {
            out << "successor list out of order at " << i << "; ";
        }
    }
    if (ring_.predecessor && ring_.predecessor->id == ring_.self.id) {
        out << "predecessor is self; ";
    }
    return out.str();
}

}  // namespace chordkv::chord
