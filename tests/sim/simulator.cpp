#include "tests/sim/simulator.hpp"

#include <algorithm>
#include <cassert>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace chordkv::sim {
namespace {

using chord::MemberState;
using chord::NodeId;
using chord::Protocol;

// Messages an invariant tally keeps from its first violating samples.
constexpr std::size_t kTallyMessagesMax = 32;
// Random picks before random_member_node() falls back to a scan.
constexpr int kRandomPicksMax = 32;

bool all_members(const std::vector<std::unique_ptr<Protocol>>& vnodes) {
    if (vnodes.empty()) return false;
    return std::all_of(vnodes.begin(), vnodes.end(), [](const std::unique_ptr<Protocol>& v) {
        return v->ring_state().state == MemberState::member;
    });
}

}  // namespace

std::uint64_t InvariantTally::always_total() const {
    std::uint64_t sum = 0;
    for (Invariant i : kAlwaysInvariants) sum += count(i);
    return sum;
}

std::uint64_t InvariantTally::total() const {
    std::uint64_t sum = 0;
    for (std::uint64_t c : violations) sum += c;
    return sum;
}

Simulator::Simulator(SimulatorOptions options) : options_(options), rng_(options.seed) {
    assert(options_.vnodes >= 1);
    assert(options_.network.latency_min <= options_.network.latency_max);
    if (options_.invariant_check_interval > Duration::zero()) {
        Event e;
        e.at = now_ + options_.invariant_check_interval;
        e.kind = EventKind::check;
        push(e);
    }
}

// Protocols hold a reference to rng_; they go first (members are destroyed in reverse order,
// and processes_ is declared after rng_).
Simulator::~Simulator() = default;

// --- membership -------------------------------------------------------------------------

NodeId Simulator::make_id(std::size_t node, std::size_t vnode) {
    if (options_.random_ids) return random_id();
    const std::string address = "n" + std::to_string(node);
    return NodeId::hash(options_.vnodes == 1 ? address : address + "#" + std::to_string(vnode));
}

NodeId Simulator::random_id() {
    NodeId::Bytes bytes{};
    for (std::size_t i = 0; i < bytes.size(); i += 8) {
        std::uint64_t word = rng_();
        for (std::size_t j = i; j < std::min(i + 8, bytes.size()); ++j) {
            bytes[j] = static_cast<std::uint8_t>(word);
            word >>= 8;
        }
    }
    return NodeId(bytes);
}

std::size_t Simulator::add_process() {
    const std::size_t node = processes_.size();
    Process p;
    p.address = "n" + std::to_string(node);
    for (std::size_t v = 0; v < options_.vnodes; ++v) p.ids.push_back(make_id(node, v));
    by_address_.emplace(p.address, node);
    processes_.push_back(std::move(p));
    up_position_.push_back(0);
    return node;
}

std::size_t Simulator::create_node() {
    const std::size_t node = add_process();
    start(node, true);
    return node;
}

std::size_t Simulator::join_node() {
    const std::size_t node = add_process();
    start(node, false);
    return node;
}

void Simulator::start(std::size_t node, bool create) {
    Process& p = processes_[node];
    assert(!p.up);
    std::optional<std::size_t> bootstrap;
    if (!create) bootstrap = random_member_node();
    p.up = true;
    ++p.incarnation;
    p.wake_at = Time::max();
    up_position_[node] = up_.size();
    up_.push_back(node);
    for (std::size_t v = 0; v < options_.vnodes; ++v) {
        p.vnodes.push_back(
            std::make_unique<Protocol>(chord::Peer{p.ids[v], p.address}, options_.protocol, rng_));
    }
    if (!bootstrap) {
        // The first process (or the only one left): its vnodes start a ring together.
        std::vector<chord::Peer> peers;
        for (const auto& v : p.vnodes) peers.push_back(v->self());
        ++calling_;
        for (auto& v : p.vnodes) v->create(now_, peers);
        --calling_;
    } else if (options_.join_through_own_process) {
        join_vnode(node, 0, processes_[*bootstrap].address);
    } else {
        for (std::size_t v = 0; v < p.vnodes.size(); ++v) {
            join_vnode(node, v, processes_[*bootstrap].address);
        }
    }
    settle(node);
}

void Simulator::join_vnode(std::size_t node, std::size_t vnode, const std::string& bootstrap) {
    Process& p = processes_[node];
    const std::uint32_t incarnation = p.incarnation;
    ++calling_;
    p.vnodes[vnode]->join(now_, bootstrap, [this, node, vnode, incarnation](Time, Status s) {
        const bool own = options_.join_through_own_process;
        if (s) {
            if (!own || vnode + 1 >= processes_[node].vnodes.size()) return;
            Event next;  // the next vnode, through this process (a fresh event, as chordd posts)
            next.at = now_;
            next.kind = EventKind::join;
            next.node = node;
            next.incarnation = incarnation;
            next.slot = vnode + 1;
            next.via_own = true;
            push(next);
            return;
        }
        ++join_failures_;
        if (options_.join_retry_delay <= Duration::zero()) return;
        Event e;
        e.at = now_ + options_.join_retry_delay;
        e.kind = EventKind::join;
        e.node = node;
        e.incarnation = incarnation;
        e.slot = vnode;
        e.via_own = own && vnode > 0;
        push(e);
    });
    --calling_;
}

void Simulator::stop(std::size_t node) {
    Process& p = processes_[node];
    assert(p.up);
    assert(calling_ == 0 && "a Protocol cannot be destroyed from inside its own call");
    p.vnodes.clear();
    p.up = false;
    ++p.incarnation;
    p.wake_at = Time::max();
    p.leaves_pending = 0;
    const std::size_t at = up_position_[node];
    up_[at] = up_.back();
    up_position_[up_[at]] = at;
    up_.pop_back();
}

void Simulator::crash(std::size_t node) {
    if (processes_.at(node).up) stop(node);
}

void Simulator::restart(std::size_t node) {
    assert(!processes_.at(node).up);
    start(node, false);
}

void Simulator::leave(std::size_t node) {
    Process& p = processes_.at(node);
    if (!p.up || p.leaves_pending > 0) return;
    const std::uint32_t incarnation = p.incarnation;
    auto one_done = [this, node, incarnation](Time, Status) {
        Process& q = processes_[node];
        if (q.incarnation != incarnation || q.leaves_pending == 0) return;
        if (--q.leaves_pending > 0) return;
        // Not here: the Protocol that called us is still on the stack.
        Event e;
        e.at = now_;
        e.kind = EventKind::remove;
        e.node = node;
        e.incarnation = incarnation;
        push(e);
    };
    // As a daemon does: every member vnode leaves at once, each knowing the others leave too.
    std::vector<NodeId> leaving;
    for (auto& vnode : p.vnodes) {
        if (vnode->ring_state().state == MemberState::member) leaving.push_back(vnode->self().id);
    }
    // One extra count while the loop runs, because leave() of a lone vnode completes at once.
    p.leaves_pending = 1;
    for (auto& vnode : p.vnodes) {
        if (vnode->ring_state().state != MemberState::member) continue;
        ++p.leaves_pending;
        ++calling_;
        vnode->leave(now_, leaving, one_done);
        --calling_;
    }
    one_done(now_, Status{});
    settle(node);
}

void Simulator::set_group(std::size_t node, int group) {
    processes_.at(node).group = group;
}

void Simulator::heal() {
    for (Process& p : processes_) p.group = 0;
}

// --- events -----------------------------------------------------------------------------

void Simulator::push(Event e) {
    e.seq = next_seq_++;
    events_.push(e);
}

void Simulator::run_until(Time t) {
    while (!events_.empty() && events_.top().at <= t) {
        Event e = events_.top();
        events_.pop();
        if (e.at != now_) {
            now_ = e.at;
            events_this_instant_ = 0;
        } else if (++events_this_instant_ > kEventsPerInstantMax) {
            throw_livelock(e);
        }
        ++events_processed_;
        process(e);
    }
    if (now_ < t) now_ = t;
}

void Simulator::throw_livelock(const Event& e) const {
    std::ostringstream out;
    out << "seed " << options_.seed << ": simulated time stuck at "
        << std::chrono::duration<double>(now_ - Time{}).count() << " s after "
        << kEventsPerInstantMax << " events; event kind " << static_cast<int>(e.kind) << " for "
        << processes_[e.node].address << "\n"
        << dump(e.node);
    const Process& p = processes_[e.node];
    for (const auto& v : p.vnodes) {
        out << "  next_deadline - now = "
            << std::chrono::duration<double>(v->next_deadline() - now_).count() << " s\n";
    }
    throw std::runtime_error(out.str());
}

void Simulator::process(Event& e) {
    switch (e.kind) {
        case EventKind::deliver:
            deliver(e);
            return;
        case EventKind::wake: {
            const Process& p = processes_[e.node];
            if (!p.up || p.incarnation != e.incarnation || p.wake_at != e.at) return;  // stale
            wake(e.node);
            return;
        }
        case EventKind::join: {
            Process& p = processes_[e.node];
            if (!p.up || p.incarnation != e.incarnation) return;
            Protocol& vnode = *p.vnodes[e.slot];
            if (vnode.ring_state().state != MemberState::idle) return;
            if (e.via_own) {
                join_vnode(e.node, e.slot, p.address);
                settle(e.node);
                return;
            }
            std::optional<std::size_t> bootstrap = random_member_node();
            if (!bootstrap) {
                // Nobody is a member any more: this vnode starts the ring again.
                ++calling_;
                vnode.create(now_);
                --calling_;
            } else {
                join_vnode(e.node, e.slot, processes_[*bootstrap].address);
            }
            settle(e.node);
            return;
        }
        case EventKind::remove: {
            const Process& p = processes_[e.node];
            if (p.up && p.incarnation == e.incarnation) stop(e.node);
            return;
        }
        case EventKind::check: {
            check_invariants();
            Event next;
            next.at = now_ + options_.invariant_check_interval;
            next.kind = EventKind::check;
            push(next);
            return;
        }
    }
}

void Simulator::deliver(const Event& e) {
    chord::Envelope envelope = std::move(envelopes_[e.slot]);
    free_slots_.push_back(e.slot);
    Process& p = processes_[e.node];
    if (!p.up) {
        ++messages_.undeliverable;
        return;
    }
    if (processes_[e.from].group != p.group) {
        ++messages_.partitioned;
        return;
    }
    Protocol* to = nullptr;
    if (envelope.to_id) {
        for (std::size_t v = 0; v < p.vnodes.size(); ++v) {
            if (p.ids[v] == *envelope.to_id) to = p.vnodes[v].get();
        }
    } else {
        // "Any vnode at this address": the first that is a member, as a daemon would route a
        // bootstrap request to a vnode that can answer it.
        to = p.vnodes.front().get();
        for (auto& v : p.vnodes) {
            if (v->ring_state().state == MemberState::member) {
                to = v.get();
                break;
            }
        }
    }
    if (!to) {
        ++messages_.undeliverable;
        return;
    }
    ++messages_.delivered;
    ++calling_;
    to->handle(now_, envelope);
    --calling_;
    settle(e.node);
}

void Simulator::wake(std::size_t node) {
    Process& p = processes_[node];
    p.wake_at = Time::max();
    for (auto& v : p.vnodes) {
        if (v->next_deadline() <= now_) {
            ++calling_;
            v->tick(now_);
            --calling_;
        }
    }
    settle(node);
}

void Simulator::settle(std::size_t node) {
    Process& p = processes_[node];
    if (!p.up) return;
    Time due = Time::max();
    for (std::size_t v = 0; v < p.vnodes.size(); ++v) {
        for (auto& envelope : p.vnodes[v]->take_outbox()) send(node, std::move(envelope));
        due = std::min(due, p.vnodes[v]->next_deadline());
    }
    if (due == Time::max() || due >= p.wake_at) return;
    p.wake_at = std::max(due, now_);
    Event e;
    e.at = p.wake_at;
    e.kind = EventKind::wake;
    e.node = node;
    e.incarnation = p.incarnation;
    push(e);
}

void Simulator::send(std::size_t from, chord::Envelope envelope) {
    ++messages_.sent;
    if (chance(options_.network.loss)) {
        ++messages_.lost;
        return;
    }
    const std::optional<std::size_t> to = node_of(envelope.to_address);
    if (!to) {
        ++messages_.undeliverable;
        return;
    }
    const bool twice = chance(options_.network.duplication);
    if (twice) ++messages_.duplicated;
    for (int copy = twice ? 2 : 1; copy > 0; --copy) {
        std::size_t slot;
        if (free_slots_.empty()) {
            slot = envelopes_.size();
            envelopes_.emplace_back();
        } else {
            slot = free_slots_.back();
            free_slots_.pop_back();
        }
        envelopes_[slot] = copy > 1 ? envelope : std::move(envelope);
        Event e;
        e.at = now_ + latency();
        e.kind = EventKind::deliver;
        e.node = *to;
        e.from = from;
        e.slot = slot;
        push(e);
    }
}

Duration Simulator::latency() {
    const auto& n = options_.network;
    std::uniform_int_distribution<Duration::rep> spread(n.latency_min.count(),
                                                        n.latency_max.count());
    return Duration(spread(rng_));
}

bool Simulator::chance(double p) {
    if (p <= 0.0) return false;
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p;
}

std::optional<std::size_t> Simulator::node_of(const std::string& address) const {
    auto it = by_address_.find(address);
    if (it == by_address_.end()) return std::nullopt;
    return it->second;
}

// --- convergence and invariants ---------------------------------------------------------

std::optional<Duration> Simulator::run_until_converged(Time deadline) {
    const Time started = now_;
    for (;;) {
        if (is_ideal()) return now_ - started;
        if (now_ >= deadline) return std::nullopt;
        run_until(std::min(now_ + options_.protocol.stabilize_interval, deadline));
    }
}

std::vector<std::string> Simulator::ideal_violations(std::size_t violations_max) const {
    return check_ideal(states(), options_.protocol.successors, violations_max);
}

InvariantReport Simulator::check_invariants() {
    InvariantReport report = sim::check_invariants(states());
    ++tally_.samples;
    for (std::size_t i = 0; i < kInvariantCount; ++i) {
        tally_.violations[i] += report.violations[i];
        if (report.violations[i] > 0) ++tally_.samples_violated[i];
    }
    for (const std::string& m : report.messages) {
        if (tally_.first_messages.size() >= kTallyMessagesMax) break;
        std::ostringstream line;
        line << "t=" << std::chrono::duration<double>(now_ - Time{}).count() << "s " << m;
        tally_.first_messages.push_back(line.str());
    }
    return report;
}

// --- lookups ----------------------------------------------------------------------------

void Simulator::lookup(std::size_t node, const NodeId& target, chord::LookupCallback done,
                       std::size_t vnode) {
    Process& p = processes_.at(node);
    assert(p.up);
    ++calling_;
    p.vnodes.at(vnode)->lookup(now_, target, std::move(done));
    --calling_;
    settle(node);
}

// --- inspection -------------------------------------------------------------------------

bool Simulator::is_up(std::size_t node) const {
    return processes_.at(node).up;
}

std::vector<std::size_t> Simulator::up_nodes() const {
    std::vector<std::size_t> out = up_;
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::size_t> Simulator::member_nodes() const {
    std::vector<std::size_t> out;
    for (std::size_t node : up_nodes()) {
        if (all_members(processes_[node].vnodes)) out.push_back(node);
    }
    return out;
}

std::optional<std::size_t> Simulator::random_member_node() {
    if (up_.empty()) return std::nullopt;
    std::uniform_int_distribution<std::size_t> pick(0, up_.size() - 1);
    for (int i = 0; i < kRandomPicksMax; ++i) {
        const std::size_t node = up_[pick(rng_)];
        if (all_members(processes_[node].vnodes)) return node;
    }
    const std::size_t offset = pick(rng_);
    for (std::size_t i = 0; i < up_.size(); ++i) {
        const std::size_t node = up_[(offset + i) % up_.size()];
        if (all_members(processes_[node].vnodes)) return node;
    }
    return std::nullopt;
}

const std::string& Simulator::address(std::size_t node) const {
    return processes_.at(node).address;
}

std::vector<NodeId> Simulator::live_ids() const {
    return oracle().ids();
}

StateRefs Simulator::states() const {
    StateRefs out;
    out.reserve(up_.size() * options_.vnodes);
    for (std::size_t node : up_) {
        for (const auto& v : processes_[node].vnodes) out.push_back(&v->ring_state());
    }
    return out;
}

const chord::RingState& Simulator::ring_state(std::size_t node, std::size_t vnode) const {
    return protocol(node, vnode).ring_state();
}

const Protocol& Simulator::protocol(std::size_t node, std::size_t vnode) const {
    const Process& p = processes_.at(node);
    assert(p.up);
    return *p.vnodes.at(vnode);
}

std::string Simulator::dump(std::size_t node) const {
    static const char* const kStates[] = {"idle", "joining", "member", "leaving", "left"};
    const Process& p = processes_.at(node);
    std::ostringstream out;
    if (!p.up) {
        out << p.address << " down\n";
        return out.str();
    }
    for (const auto& v : p.vnodes) {
        const chord::RingState& s = v->ring_state();
        out << describe(s.self) << " " << kStates[static_cast<int>(s.state)] << " pred=";
        out << (s.predecessor ? describe(*s.predecessor) : std::string("none")) << " succ=[";
        for (std::size_t i = 0; i < s.successors.size(); ++i) {
            out << (i ? ", " : "") << describe(s.successors[i]);
        }
        out << "]\n";
    }
    return out.str();
}

chord::ProtocolStats Simulator::protocol_stats() const {
    chord::ProtocolStats sum;
    for (std::size_t node : up_) {
        for (const auto& v : processes_[node].vnodes) {
            const chord::ProtocolStats& s = v->stats();
            sum.lookups_started += s.lookups_started;
            sum.lookups_failed += s.lookups_failed;
            sum.lookup_hops += s.lookup_hops;
            sum.lookup_timeouts += s.lookup_timeouts;
            sum.rpcs_sent += s.rpcs_sent;
            sum.rpc_timeouts += s.rpc_timeouts;
            sum.rpc_retries += s.rpc_retries;
            sum.rpcs_rejected += s.rpcs_rejected;
            sum.messages_received += s.messages_received;
            sum.messages_ignored += s.messages_ignored;
        }
    }
    return sum;
}

// --- lookup batches ---------------------------------------------------------------------

double LookupSummary::mean_hops() const {
    if (hops.empty()) return 0.0;
    double sum = 0.0;
    for (int h : hops) sum += h;
    return sum / static_cast<double>(hops.size());
}

int LookupSummary::hops_quantile(double q) const {
    if (hops.empty()) return 0;
    std::vector<int> sorted = hops;
    const auto k = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(k), sorted.end());
    return sorted[k];
}

LookupSummary run_lookups(Simulator& sim, std::size_t count, Time deadline) {
    // Failures worth printing in full; the counts say the rest.
    constexpr std::size_t kFailuresMax = 10;
    // Shared with the callbacks, which may outlive this call if a lookup never completes.
    auto summary = std::make_shared<LookupSummary>();
    auto oracle = std::make_shared<const Oracle>(sim.oracle());
    const std::vector<std::size_t> members = sim.member_nodes();
    assert(!members.empty());
    std::uniform_int_distribution<std::size_t> pick(0, members.size() - 1);
    std::uniform_int_distribution<std::size_t> pick_vnode(0, sim.options().vnodes - 1);
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t node = members[pick(sim.rng())];
        const std::size_t vnode = pick_vnode(sim.rng());
        const NodeId target = sim.random_id();
        const std::string from = sim.address(node);
        ++summary->issued;
        sim.lookup(
            node, target,
            [summary, oracle, target, from](Time, Result<chord::LookupResult> r) {
                LookupSummary& s = *summary;
                ++s.completed;
                std::string why;
                if (!r) {
                    ++s.errors;
                    why = "lookup(" + target.short_hex() + ") failed: " + r.error().message();
                } else {
                    s.timeouts += static_cast<std::uint64_t>(r->timeouts);
                    why = check_lookup(*oracle, target, *r);
                    if (why.empty()) {
                        s.hops.push_back(r->hops);
                    } else {
                        ++s.wrong;
                    }
                }
                if (!why.empty() && s.failures.size() < kFailuresMax) {
                    s.failures.push_back("from " + from + ": " + why);
                }
            },
            vnode);
    }
    // Poll at a fraction of a typical hop time: cheap, and adds no events of its own.
    constexpr Duration kPoll = std::chrono::milliseconds(100);
    while (summary->completed < summary->issued && sim.now() < deadline) {
        sim.run_until(std::min(sim.now() + kPoll, deadline));
    }
    return *summary;
}

}  // namespace chordkv::sim
