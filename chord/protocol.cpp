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

void Protocol::join(Time now, const std::string& bootstrap_address, DoneCallback done) {
    if (ring_.state != MemberState::idle) {
        if (done) done(now, Status(Errc::invalid_argument, "join: the vnode is not idle"));
        return;
    }
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
            if (auto done = std::move(join_done_)) {
                done(t, reply ? Status(Errc::malformed_message, "join: unexpected reply")
                              : Status(reply.error()));
            }
            return;
        }
        ring_.state = MemberState::member;
        ring_.predecessor.reset();
        adopt_successors(s, n->successors);
        notify_successor();
        stabilize_at_ = t + jittered(options_.stabilize_interval);
        fix_fingers_at_ = t;
        if (auto done = std::move(join_done_)) done(t, Status{});
    });
}

void Protocol::leave(Time now, DoneCallback done) {
    if (ring_.state != MemberState::member) {
        if (done) done(now, Status(Errc::shutting_down, "leave: the vnode is not a member"));
        return;
    }
    ring_.state = MemberState::leaving;
    leave_done_ = std::move(done);
    leave_deadline_ = now + options_.leave_timeout;
    const Leave notice{ring_.predecessor, ring_.successors};
    std::vector<Peer> told;
    auto tell = [&](const Peer& p) {
        if (p.id == ring_.self.id || contains_id(told, p.id)) return;
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
    if (leave_acks_pending_ == 0) finish_leave(now, Status{});  // alone on the ring
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
    ++stats_.messages_received;
    if (ring_.state == MemberState::left || (in.to_id && *in.to_id != ring_.self.id)) {
        ++stats_.messages_ignored;
        return;
    }
    if (in.reply) {
        if (!rpcs_.complete(now, in)) ++stats_.messages_ignored;
        return;
    }
    if (in.from.id == ring_.self.id && in.from.address == ring_.self.address) {
        ++stats_.messages_ignored;  // our own request looped back: never answer ourselves
        return;
    }
    on_request(now, in);
}

void Protocol::on_request(Time now, const Envelope& in) {
    // Idle and joining vnodes know no ring yet: they answer nothing but Ping, so that askers
    // time out and try someone who knows.
    const bool serving = ring_.state == MemberState::member || ring_.state == MemberState::leaving;
    std::visit(Overloaded{
                   [&](const Ping&) { reply_to(in, Pong{}); },
                   [&](const GetNeighbors&) {
                       if (serving) reply_to(in, Neighbors{ring_.predecessor, ring_.successors});
                   },
                   [&](const FindNext& f) {
                       if (ring_.state == MemberState::member) reply_to(in, find_next(f.target));
                   },
                   [&](const Notify&) {
                       if (ring_.state == MemberState::member) rectify(now, in.from);
                   },
                   [&](const Leave& l) {
                       if (serving) on_leave(now, in, l);
                   },
                   [&](const auto&) { ++stats_.messages_ignored; },  // a reply type sent as request
               },
               in.body);
}

// --- lookups ----------------------------------------------------------------------------

FindNextReply Protocol::find_next(const NodeId& target) const {
    FindNextReply out;
    const Peer& successor = ring_.successors.front();
    if (in_open_closed(target, ring_.self.id, successor.id)) {
        out.done = true;
        out.peers = ring_.successors;
        return out;
    }
    out.peers = closest_preceding_nodes(target, options_.lookup_candidates);
    return out;
}

std::vector<Peer> Protocol::closest_preceding_nodes(const NodeId& target, std::size_t count) const {
    // Candidates from fingers ∪ successor list that lie in (self, target), closest to the
    // target first. The successor list is included so that a lookup still progresses while
    // the fingers are empty or stale (correctness rests on successors, fingers are shortcuts).
    std::vector<const Peer*> found;
    found.reserve(count + 1);
    auto consider = [&](const Peer& p) {
        if (!in_open(p.id, ring_.self.id, target)) return;
        for (const Peer* q : found) {
            if (q->id == p.id) return;
        }
        found.push_back(&p);
        std::sort(found.begin(), found.end(), [&](const Peer* a, const Peer* b) {
            return distance(a->id, target) < distance(b->id, target);
        });
        if (found.size() > count) found.pop_back();
    };
    // Fingers from the top down: the largest fingers are the closest candidates, so once
    // `count` are found the rest rarely displace them.
    for (int i = kFingers - 1; i >= 0; --i) {
        if (const auto& f = ring_.fingers[static_cast<std::size_t>(i)]) consider(*f);
    }
    for (const Peer& p : ring_.successors) consider(p);
    std::vector<Peer> out;
    out.reserve(found.size());
    for (const Peer* p : found) out.push_back(*p);
    return out;
}

void Protocol::lookup(Time now, const NodeId& target, LookupCallback done) {
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
        // The hop failed: forget the peer as a shortcut and fall back to the next-best.
        ++l.timeouts;
        ++stats_.lookup_timeouts;
        if (!asked.address.empty() && asked.id != NodeId()) forget(asked);
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
}

Time Protocol::next_deadline() const {
    return std::min({rpcs_.next_deadline(), stabilize_at_, fix_fingers_at_, leave_deadline_});
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
        if (contains_id(list, p.id)) continue;
        // Keep the list ordered clockwise from self (OrderedSuccessorLists).
        if (!in_open(p.id, list.back().id, ring_.self.id)) break;
        list.push_back(p);
    }
    ring_.successors = std::move(list);
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
        stabilizing_ = true;
        const Peer p = *ring_.predecessor;
        call(now, p, GetNeighbors{}, [this, p](Time, Result<Envelope> reply) {
            stabilizing_ = false;
            if (ring_.state != MemberState::member) return;
            const Neighbors* n = reply ? std::get_if<Neighbors>(&reply->body) : nullptr;
            if (!n || ring_.successors.front().id != ring_.self.id) return;
            adopt_successors(p, n->successors);
            notify_successor();
        });
        return;
    }
    stabilizing_ = true;
    call(now, s, GetNeighbors{}, [this, s](Time t, Result<Envelope> reply) {
        stabilizing_ = false;
        if (ring_.state != MemberState::member) return;
        if (reply.code() == Errc::busy) return;  // our own overload says nothing about s
        const Neighbors* n = reply ? std::get_if<Neighbors>(&reply->body) : nullptr;
        if (!n) {
            successor_failed(t, s);
            return;
        }
        on_stabilize_reply(t, s, *n);
    });
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
    // s knows a vnode p between us and s. Adopt it only after hearing from p itself.
    stabilizing_ = true;
    const Peer candidate = *p;
    call(now, candidate, GetNeighbors{}, [this, candidate](Time, Result<Envelope> reply) {
        stabilizing_ = false;
        if (ring_.state != MemberState::member) return;
        const Neighbors* pn = reply ? std::get_if<Neighbors>(&reply->body) : nullptr;
        if (pn && in_open(candidate.id, ring_.self.id, ring_.successors.front().id)) {
            std::vector<Peer> rest = pn->successors;
            adopt_successors(candidate, rest);
        } else if (!pn) {
            forget(candidate);
        }
        notify_successor();
    });
}

void Protocol::successor_failed(Time now, const Peer& s) {
    forget(s);
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
    }
    // Ask the next successor at once rather than a period later.
    stabilize(now);
}

void Protocol::rectify(Time now, const Peer& candidate) {
    if (candidate.id == ring_.self.id) return;
    auto& pred = ring_.predecessor;
    if (!pred || pred->id == ring_.self.id || in_open(candidate.id, pred->id, ring_.self.id)) {
        pred = candidate;
        return;
    }
    if (pred->id == candidate.id) {
        pred = candidate;  // same vnode; its address may have changed
        return;
    }
    // The candidate is behind our predecessor: it replaces it only if the predecessor is dead.
    predecessor_candidate_ = candidate;
    if (pinging_predecessor_) return;
    pinging_predecessor_ = true;
    const Peer pinged = *pred;
    call(now, pinged, Ping{}, [this, pinged](Time, Result<Envelope> reply) {
        pinging_predecessor_ = false;
        if (ring_.state != MemberState::member) return;
        auto replacement = std::move(predecessor_candidate_);
        predecessor_candidate_.reset();
        if (reply || reply.code() == Errc::busy) return;  // alive (or unknown): it stays
        forget(pinged);
        if (ring_.predecessor && ring_.predecessor->id == pinged.id) {
            ring_.predecessor = replacement;
        }
    });
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
    const Peer& leaver = in.from;
    forget(leaver);
    if (ring_.predecessor && ring_.predecessor->id == leaver.id) {
        // Our predecessor leaves: its own predecessor will notify us once it has taken us as
        // successor; until then we have none (rectify accepts the first notifier).
        ring_.predecessor.reset();
    }
    auto& list = ring_.successors;
    if (!list.empty() && list.front().id == leaver.id) {
        // Our successor leaves: continue with its successor list.
        std::vector<Peer> rest;
        for (const Peer& p : leave.successors) {
            if (p.id != leaver.id) rest.push_back(p);
        }
        if (!rest.empty() && rest.front().id != ring_.self.id) {
            const Peer first = rest.front();
            rest.erase(rest.begin());
            adopt_successors(first, rest);
        } else {
            list.erase(list.begin());
            if (list.empty()) list.push_back(ring_.self);
        }
        reply_to(in, LeaveAck{});
        stabilize(now);
        return;
    }
    list.erase(
        std::remove_if(list.begin(), list.end(), [&](const Peer& p) { return p.id == leaver.id; }),
        list.end());
    if (list.empty()) list.push_back(ring_.self);
    reply_to(in, LeaveAck{});
}

void Protocol::forget(const Peer& peer) {
    for (auto& f : ring_.fingers) {
        if (f && f->id == peer.id) f.reset();
    }
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
