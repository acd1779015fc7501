#include "node/ring_view.hpp"

#include <algorithm>
#include <cassert>
#include <utility>

#include "chord/protocol.hpp"

namespace chordkv {

// --- RingWalk ---------------------------------------------------------------------------------

RingWalk::RingWalk(std::vector<std::string> seeds, std::size_t processes_max,
                   Clock::time_point deadline)
    : seeds_(std::move(seeds)), processes_max_(processes_max), deadline_(deadline) {}

std::optional<std::string> RingWalk::next(Clock::time_point now) {
    if (now >= deadline_ || asked_ >= processes_max_) return std::nullopt;
    if (!seed_answered_) {
        // Seeds one at a time: the first that answers names the rest of the ring.
        if (!outstanding_.empty()) return std::nullopt;
        while (next_seed_ < seeds_.size()) {
            const std::string& seed = seeds_[next_seed_++];
            if (!named_.insert(seed).second) continue;  // asked already (a duplicate)
            outstanding_.insert(seed);
            ++asked_;
            return seed;
        }
        return std::nullopt;
    }
    if (queue_.empty()) return std::nullopt;
    std::string address = std::move(queue_.front());
    queue_.pop_front();
    outstanding_.insert(address);
    ++asked_;
    return address;
}

void RingWalk::enqueue(const std::string& address) {
    if (address.empty() || !named_.insert(address).second) return;
    queue_.push_back(address);
}

void RingWalk::on_reply(const std::string& asked, const net::InfoReply& reply) {
    const bool was_outstanding = outstanding_.erase(asked) > 0;
    assert(was_outstanding && "on_reply for an address next() did not hand out");
    (void)was_outstanding;
    seed_answered_ = true;
    // Peers name a process by its advertised address, which may differ from the one we used.
    const std::string& self = reply.address.empty() ? asked : reply.address;
    named_.insert(self);
    queue_.erase(std::remove(queue_.begin(), queue_.end(), self), queue_.end());
    auto& own = answered_[self];
    own.clear();
    constexpr auto kMember = static_cast<std::uint8_t>(chord::MemberState::member);
    for (const auto& v : reply.vnodes) {
        if (v.state != kMember) continue;
        own.push_back(v.id);
        auto hear = [&](const chord::Peer& peer) {
            hearsay_.emplace(peer.id, peer.address);
            enqueue(peer.address);
        };
        for (const auto& peer : v.successors) hear(peer);
        if (v.predecessor) hear(*v.predecessor);
    }
}

void RingWalk::on_failure(const std::string& asked) {
    const bool was_outstanding = outstanding_.erase(asked) > 0;
    assert(was_outstanding && "on_failure for an address next() did not hand out");
    (void)was_outstanding;
    failed_.insert(asked);
}

bool RingWalk::done(Clock::time_point now) const {
    if (!outstanding_.empty()) return false;
    if (now >= deadline_ || asked_ >= processes_max_) return true;
    if (!seed_answered_) {
        return std::all_of(seeds_.begin() + static_cast<std::ptrdiff_t>(next_seed_), seeds_.end(),
                           [&](const std::string& s) { return named_.count(s) > 0; });
    }
    return queue_.empty();
}

std::map<chord::NodeId, std::string> RingWalk::vnodes() const {
    std::map<chord::NodeId, std::string> out;
    for (const auto& [address, ids] : answered_) {
        for (const auto& id : ids) out[id] = address;
    }
    for (const auto& [id, address] : hearsay_) {
        // A process that answered spoke for itself; one that failed is probably gone.
        if (answered_.count(address) > 0 || failed_.count(address) > 0) continue;
        out.emplace(id, address);
    }
    return out;
}

// --- RingView ---------------------------------------------------------------------------------

RingView::RingView(RingViewOptions options) : options_(options) {}

const std::string* RingView::owner(const chord::NodeId& key_id) const {
    if (vnodes_.empty()) return nullptr;
    auto it = vnodes_.lower_bound(key_id);  // successor(k): the first vnode at or after k
    if (it == vnodes_.end()) it = vnodes_.begin();
    return &it->second;
}

void RingView::on_redirect(const std::string& from, const chord::NodeId& key_id,
                           const chord::NodeId& owner_id, const std::string& owner_address) {
    if (const std::string* believed = owner(key_id); believed && *believed == from) {
        stale_ = true;
        ++stats_.stale_redirects;
    }
    if (owner_address.empty()) return;
    if (auto it = vnodes_.find(owner_id); it != vnodes_.end()) {
        if (it->second != owner_address) {
            it->second = owner_address;
            ++stats_.vnodes_learned;
        }
        return;
    }
    if (vnodes_.size() >= options_.vnodes_max) return;
    vnodes_.emplace(owner_id, owner_address);
    ++stats_.vnodes_learned;
}

void RingView::on_unreachable(const std::string& address) {
    for (auto it = vnodes_.begin(); it != vnodes_.end();) {
        it = it->second == address ? vnodes_.erase(it) : std::next(it);
    }
    stale_ = true;
    ++stats_.unreachable;
}

bool RingView::walk_due(Clock::time_point now) const {
    if (walking_ || (!vnodes_.empty() && !stale_)) return false;
    return !last_walk_ || now - *last_walk_ >= options_.rewalk_interval_min;
}

RingWalk RingView::start_walk(std::vector<std::string> seeds, Clock::time_point now) {
    walking_ = true;
    last_walk_ = now;
    ++stats_.walks;
    // The processes already known are seeds too: the given ones may have left.
    std::set<std::string> known(seeds.begin(), seeds.end());
    for (const auto& entry : vnodes_) {
        if (known.insert(entry.second).second) seeds.push_back(entry.second);
    }
    return RingWalk(std::move(seeds), options_.walk_processes_max, now + options_.walk_timeout);
}

void RingView::finish_walk(const RingWalk& walk) {
    walking_ = false;
    auto found = walk.vnodes();
    if (found.empty()) {
        ++stats_.walks_empty;
        return;
    }
    vnodes_ = std::move(found);
    stale_ = false;
}

std::size_t RingView::processes() const {
    std::set<std::string> distinct;
    for (const auto& entry : vnodes_) distinct.insert(entry.second);
    return distinct.size();
}

}  // namespace chordkv
