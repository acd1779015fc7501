// The data path of a Node (DESIGN.md "Data path"): put/get/delete coordinated by the key's
// owner, replicated on the next R-1 distinct processes of its successor list, acknowledged
// after W copies; reads from the owner with fallback to replicas, quorum reads with repair.
//
//   put:  owner stamps version (HLC) ─► local LWW apply, with the other puts of its io turn
//         (one RocksDB batch, flushed before any other request) ─► R-1 replicas, each through the
//         ReplicationQueue (the writes of one io turn for one replica: one
//         ReplicateWritesRequest, one reply, one RocksDB batch there)
//         reply PutReply once W copies (owner included) hold it; error when they cannot
//   get:  owner reads locally; not found ─► ReadReplica ×, newest wins, owner repaired
//         quorum: owner + every replica, newest wins, stale copies repaired
#include <algorithm>
#include <boost/asio/post.hpp>
#include <chrono>
#include <memory>
#include <utility>
#include <vector>

#include "net/admin_codec.hpp"
#include "node/node.hpp"

namespace chordkv {

namespace {

net::WireRecord to_wire(const storage::Record& r) {
    return {r.version, r.tombstone, r.value};
}
storage::Record from_wire(const net::WireRecord& r) {
    return {r.version, r.tombstone, r.value};
}

// The newest of the copies collected for one read.
struct Newest {
    bool exists = false;
    storage::Record record;
    void offer(const storage::Record& r) {
        if (!exists || r.version > record.version) {
            exists = true;
            record = r;
        }
    }
};

}  // namespace

const std::string* Node::cluster_key() const {
    return options_.transport.cluster_key.empty() ? nullptr : &options_.transport.cluster_key;
}

void Node::reply_error(const ConnectionPtr& to, std::uint64_t request_id, const Error& error) {
    reply(to, net::ErrorReply{request_id, error.code().value(), error.message()});
}

std::uint64_t Node::physical_ms() const {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

chord::Protocol* Node::owner_vnode(const chord::NodeId& key_id) {
    for (auto& vnode : vnodes_) {
        const auto& ring = vnode->ring_state();
        if (ring.state != chord::MemberState::member) continue;
        if (!ring.predecessor) {
            // Alone on the ring, the vnode owns everything; otherwise it cannot tell yet.
            if (!ring.successors.empty() && ring.successors.front().id == ring.self.id) {
                return vnode.get();
            }
            continue;
        }
        if (chord::in_open_closed(key_id, ring.predecessor->id, ring.self.id)) return vnode.get();
    }
    return nullptr;
}

std::vector<std::string> Node::replica_addresses(const chord::Protocol& vnode,
                                                 std::size_t count) const {
    // The next `count` distinct processes clockwise after `vnode`, from its successor list —
    // which is enough unless its r entries span too few processes (few processes, many vnodes
    // each). Then the successor lists of this process's other vnodes, which continue the ring
    // where that list ends (our vnodes inside it have lists of their own), and the fingers,
    // which reach furthest, are merged in clockwise order.
    const chord::NodeId& from = vnode.self().id;
    std::vector<std::string> out;
    auto take = [&](const chord::Peer& peer) {
        if (out.size() >= count || peer.id == from || peer.address == advertise_text_) return;
        if (std::find(out.begin(), out.end(), peer.address) != out.end()) return;
        out.push_back(peer.address);
    };
    const auto& successors = vnode.ring_state().successors;
    for (const auto& p : successors) take(p);
    if (out.size() >= count) return out;

    // The merge below sorts every vnode's successors and fingers (thousands of entries at 128
    // vnodes), and a put to this vnode would pay it each time: it is kept per vnode while the
    // successor list stays the same, for at most kHoldersMemoFor (the fingers and the other
    // lists move too; a holder named from a stale merge fails its write, which marks the arc
    // for repair, as any missing copy does).
    HoldersMemo& memo = holders_memo_[index_of(vnode)];
    const chord::Time t = now();
    const bool same_list = std::equal(
        successors.begin(), successors.end(), memo.successors.begin(), memo.successors.end(),
        [](const chord::Peer& a, const chord::NodeId& b) { return a.id == b; });
    if (memo.count == count && same_list && t - memo.at < kHoldersMemoFor) return memo.holders;

    out.clear();
    std::vector<const chord::Peer*> known;
    for (const auto& v : vnodes_) {
        const auto& ring = v->ring_state();
        if (ring.state != chord::MemberState::member) continue;
        for (const auto& p : ring.successors) known.push_back(&p);
        const chord::Peer* last = nullptr;
        for (const auto& f : ring.fingers) {
            if (!f || (last && last->id == f->id)) continue;  // fingers repeat in runs
            last = &*f;
            known.push_back(last);
        }
    }
    std::sort(known.begin(), known.end(), [&](const chord::Peer* a, const chord::Peer* b) {
        return chord::distance(from, a->id) < chord::distance(from, b->id);
    });
    for (const auto* peer : known) take(*peer);
    memo.at = t;
    memo.count = count;
    memo.successors.clear();
    for (const auto& p : successors) memo.successors.push_back(p.id);
    memo.holders = out;
    return out;
}

void Node::route_request(const ConnectionPtr& from, std::uint64_t request_id,
                         const std::string& key, std::function<void(chord::Protocol&)> coordinate) {
    const chord::NodeId key_id = chord::NodeId::hash(key);
    if (chord::Protocol* vnode = owner_vnode(key_id)) {
        coordinate(*vnode);
        return;
    }
    std::weak_ptr<net::Connection> weak = from;
    std::weak_ptr<int> alive = alive_;
    lookup(key, [this, weak, alive, request_id, key_id, coordinate = std::move(coordinate)](
                    chord::Time, Result<chord::LookupResult> found) {
        auto connection = weak.lock();
        if (!connection || alive.expired()) return;
        if (!found) {
            reply_error(connection, request_id, found.error());
            return;
        }
        if (found->owner.address == advertise_text_) {
            // One of ours after all (our predecessor pointer was not settled yet).
            for (auto& vnode : vnodes_) {
                if (vnode->self().id == found->owner.id) {
                    coordinate(*vnode);
                    return;
                }
            }
        }
        (void)key_id;
        reply(connection, net::Redirect{request_id, found->owner.id, found->owner.address});
    });
}

void Node::prefetch_keys(const std::vector<net::FrameView>& frames) {
    keys_ahead_.clear();
    for (const net::FrameView& frame : frames) {
        if (frame.type != net::admin_type<net::GetRequest>() &&
            frame.type != net::admin_type<net::PutRequest>()) {
            continue;
        }
        if (auto key = net::peek_request_key(frame.payload)) keys_ahead_.push_back(*key);
    }
    if (keys_ahead_.size() > 1) store_->prefetch(keys_ahead_);
    keys_ahead_.clear();  // the views die with the read
}

// --- writes -----------------------------------------------------------------------------

Status Node::check_key(std::string_view key) const {
    if (key.empty()) return Status(Errc::invalid_argument, "empty key");
    if (key.size() > options_.store.key_bytes_max) {
        return Status(Errc::too_large, "key of " + std::to_string(key.size()) + " bytes (limit " +
                                           std::to_string(options_.store.key_bytes_max) + ")");
    }
    return {};
}

void Node::on_put(const ConnectionPtr& from, net::PutRequest request) {
    const auto& limits = options_.store;
    if (auto ok = check_key(request.key); !ok) {
        reply_error(from, request.request_id, ok.error());
        return;
    }
    if (request.value.size() > limits.value_bytes_max) {
        reply_error(from, request.request_id,
                    Error(Errc::too_large, "value of " + std::to_string(request.value.size()) +
                                               " bytes (limit " +
                                               std::to_string(limits.value_bytes_max) + ")"));
        return;
    }
    // The common case, a key one of our vnodes owns, is coordinated at once: no lookup and
    // no callback to allocate. A key the record cache holds costs no SHA-1 (key_id()).
    if (chord::Protocol* vnode = owner_vnode(store_->key_id(request.key))) {
        coordinate_put(from, *vnode, std::move(request));
        return;
    }
    const std::uint64_t id = request.request_id;
    const std::string key = request.key;
    route_request(from, id, key,
                  [this, from, request = std::move(request)](chord::Protocol& vnode) mutable {
                      coordinate_put(from, vnode, std::move(request));
                  });
}

void Node::coordinate_put(const ConnectionPtr& from, chord::Protocol& vnode,
                          net::PutRequest request) {
    if (request.deadline_ms != 0) {
        const std::uint64_t now = physical_ms();
        if (now > request.deadline_ms) {
            // The client stopped waiting for this write and may have written the key since;
            // applying it now would stamp it newer than that write (net/data.hpp).
            ++expired_writes_;
            reply_error(from, request.request_id,
                        Error(Errc::timed_out, "the write reached the owner " +
                                                   std::to_string(now - request.deadline_ms) +
                                                   " ms after its deadline; not applied"));
            return;
        }
    }
    storage::Record record{hlc_.stamp(physical_ms()), request.tombstone,
                           request.tombstone ? std::string() : std::move(request.value)};
    // The puts of this io turn are written together (one WAL record; with sync_writes one
    // fsync) by a flush posted behind the turn's other handlers (group commit): a write per put
    // cost a WAL record, a write() and RocksDB's write-path entry each.
    const chord::NodeId key_id = store_->key_id(request.key);
    pending_puts_.push_back(
        PendingPut{from, index_of(vnode), request.request_id,
                   storage::Entry{key_id, std::move(request.key), std::move(record)}});
    if (!puts_flush_posted_) {
        puts_flush_posted_ = true;
        boost::asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
            if (alive.expired()) return;
            puts_flush_posted_ = false;
            flush_puts();
        });
    }
}

void Node::flush_puts() {
    if (pending_puts_.empty()) return;
    std::vector<PendingPut> puts = std::move(pending_puts_);
    pending_puts_ = std::move(spare_puts_);
    pending_puts_.clear();
    // Each connection's replies go out in one write when the last of them is queued, not by
    // a flush posted for each connection.
    for (const PendingPut& put : puts) put.from->cork();
    // Batches within the store's batch_bytes_max; a put alone is within it (its value passed
    // value_bytes_max), so every batch holds at least one.
    std::size_t first = 0;
    while (first < puts.size()) {
        std::vector<storage::Entry> entries = std::move(spare_entries_);
        entries.clear();
        std::size_t bytes = 0;
        std::size_t end = first;
        for (; end < puts.size(); ++end) {
            const storage::Entry& e = puts[end].entry;
            const std::size_t size = e.key.size() + e.record.value.size();
            if (end > first && bytes + size > options_.store.batch_bytes_max) break;
            bytes += size;
        }
        entries.reserve(end - first);
        for (std::size_t i = first; i < end; ++i) entries.push_back(std::move(puts[i].entry));
        // Cached as apply() caches a put: the owner serves the next get of the key.
        auto written = store_->apply_batch(entries, /*cache_new_keys=*/true);
        for (std::size_t i = first; i < end; ++i) {
            PendingPut& put = puts[i];
            storage::Entry& entry = entries[i - first];
            if (!written) {
                reply_error(put.from, put.request_id, written.error());
                continue;
            }
            replicate_put(put.from, put.vnode, put.request_id, std::move(entry.key), entry.record);
        }
        entries.clear();
        spare_entries_ = std::move(entries);
        first = end;
    }
    for (const PendingPut& put : puts) put.from->uncork();
    puts.clear();
    spare_puts_ = std::move(puts);
}

void Node::replicate_put(const ConnectionPtr& from, std::size_t vnode, std::uint64_t request_id,
                         std::string key, const storage::Record& record) {
    const auto replicas = replica_addresses(*vnodes_[vnode], options_.replicas - 1);
    // The arc needs comparing with its holders (repair) when a copy of this write is missing:
    // too few holders to send it to, or a holder that did not answer with success (below). A
    // write every holder took leaves the arc as synced as it was.
    if (replicas.size() + 1 < options_.replicas) repair_memo_[vnode].dirty = true;
    if (replicas.empty()) {  // R = 1, or no holder known: the owner's copy is the one needed
        reply(from, net::PutReply{request_id, record.version, 1});
        return;
    }
    struct Progress {
        std::size_t copies = 1;  // the owner's
        std::size_t pending = 0;
        std::size_t needed = 1;
        bool replied = false;
    };
    auto progress = std::make_shared<Progress>();
    progress->pending = replicas.size();
    progress->needed = std::max<std::size_t>(1, std::min(options_.write_acks, 1 + replicas.size()));
    const std::uint64_t version = record.version;
    auto maybe_reply = [this, from, progress, request_id, version]() {
        if (progress->replied) return;
        if (progress->copies >= progress->needed) {
            progress->replied = true;
            reply(from,
                  net::PutReply{request_id, version, static_cast<std::uint8_t>(progress->copies)});
        } else if (progress->pending == 0) {
            progress->replied = true;
            reply_error(from, request_id,
                        Error(Errc::unreachable, "written to " + std::to_string(progress->copies) +
                                                     " of the " + std::to_string(progress->needed) +
                                                     " copies required"));
        }
    };
    maybe_reply();
    if (replicas.empty()) return;
    // Gathered with the other writes of this io turn into one request per replica.
    if (!replication_) {
        net::ReplicationQueueOptions queue_options;
        queue_options.timeout = options_.replica_timeout;
        replication_ = std::make_unique<net::ReplicationQueue>(io_, *peers_, queue_options);
    }
    net::SyncEntry entry{std::move(key), to_wire(record)};
    for (std::size_t i = 0; i < replicas.size(); ++i) {
        replication_->add(replicas[i], i + 1 == replicas.size() ? std::move(entry) : entry,
                          [this, alive = std::weak_ptr<int>(alive_), vnode, progress,
                           maybe_reply](const Status& status) {
                              --progress->pending;
                              // Applied now or already held as new: a copy either way.
                              if (status) {
                                  ++progress->copies;
                              } else if (!alive.expired()) {
                                  // (A queue destroyed with the Node fails its writes after
                                  // alive_, and repair_memo_, are gone.)
                                  repair_memo_[vnode].dirty = true;
                              }
                              maybe_reply();
                          });
    }
}

void Node::on_replicate(const ConnectionPtr& from, const net::ReplicateRequest& request) {
    // A version stamped far in the future is stored all the same (it is the owner's), but it
    // does not drag our clock along (observe() refuses it).
    (void)hlc_.observe(request.record.version, physical_ms());
    auto applied = store_->apply(request.key, from_wire(request.record));
    if (!applied) {
        reply_error(from, request.request_id, applied.error());
        return;
    }
    reply(from, net::ReplicateReply{request.request_id, *applied});
}

void Node::on_replicate_writes(const ConnectionPtr& from, net::ReplicateWritesRequest request) {
    std::uint64_t newest = 0;
    for (const auto& e : request.entries) newest = std::max(newest, e.record.version);
    // As on_replicate: the owner's stamps are stored, but a far-future one does not drag our
    // clock along.
    (void)hlc_.observe(newest, physical_ms());
    // One RocksDB batch (one WAL record) per batch_bytes_max of entries: last writer wins per
    // key as in apply(), and every key written is cached, as apply() caches it, so a failover
    // finds the replica's keys cached. An error stops here: the owner counts none of these
    // copies.
    std::uint64_t applied = 0;
    std::vector<storage::Entry> entries;
    std::size_t bytes = 0;
    auto write = [&]() -> Status {
        auto written = store_->apply_batch(entries, /*cache_new_keys=*/true);
        if (!written) return written.error();
        applied += *written;
        entries.clear();
        bytes = 0;
        return {};
    };
    entries.reserve(request.entries.size());
    for (auto& e : request.entries) {
        const std::size_t size = e.key.size() + e.record.value.size();
        if (!entries.empty() && bytes + size > options_.store.batch_bytes_max) {
            if (auto ok = write(); !ok) {
                reply_error(from, request.request_id, ok.error());
                return;
            }
        }
        bytes += size;
        const chord::NodeId key_id = store_->key_id(e.key);
        entries.push_back(storage::Entry{
            key_id, std::move(e.key),
            storage::Record{e.record.version, e.record.tombstone, std::move(e.record.value)}});
    }
    if (!entries.empty()) {
        if (auto ok = write(); !ok) {
            reply_error(from, request.request_id, ok.error());
            return;
        }
    }
    reply(from, net::ReplicateWritesReply{request.request_id, applied});
}

// --- reads ------------------------------------------------------------------------------

void Node::on_get(const ConnectionPtr& from, net::GetRequest request) {
    if (auto ok = check_key(request.key); !ok) {
        reply_error(from, request.request_id, ok.error());
        return;
    }
    if (chord::Protocol* vnode = owner_vnode(store_->key_id(request.key))) {
        coordinate_get(from, *vnode, std::move(request));  // as on_put: no lookup, no callback
        return;
    }
    const std::uint64_t id = request.request_id;
    const std::string key = request.key;
    route_request(from, id, key,
                  [this, from, request = std::move(request)](chord::Protocol& vnode) mutable {
                      coordinate_get(from, vnode, std::move(request));
                  });
}

void Node::coordinate_get(const ConnectionPtr& from, chord::Protocol& vnode,
                          net::GetRequest request) {
    auto local = store_->read(request.key);
    if (!local && local.code() != Errc::not_found) {
        reply_error(from, request.request_id, local.error());
        return;
    }
    if (local && !request.quorum && arc_settled(index_of(vnode))) {
        // The owner's copy is authoritative for a plain read; its value moves into the reply.
        net::GetReply r;
        r.request_id = request.request_id;
        r.found = !local->tombstone;
        r.version = local->version;
        if (r.found) r.value = std::move(local->value);
        reply(from, r);
        return;
    }
    auto answer = [this, from, id = request.request_id](const Newest& newest) {
        net::GetReply r;
        r.request_id = id;
        r.found = newest.exists && !newest.record.tombstone;
        r.version = newest.exists ? newest.record.version : 0;
        if (r.found) r.value = newest.record.value;
        reply(from, r);
    };
    Newest newest;
    if (local) newest.offer(*local);
    // An arc still being handed over (it changed, or this process rejoined) may lack the
    // newest copy: its plain reads ask the replicas too, as a quorum read does.
    const auto replicas = replica_addresses(vnode, options_.replicas - 1);
    if (replicas.empty()) {
        answer(newest);
        return;
    }
    // Fallback (nothing here) or quorum: ask every replica, answer with the newest copy and
    // repair every copy that is older or missing, the owner's included.
    struct Gather {
        Newest newest;
        std::vector<std::pair<std::string, std::uint64_t>> versions;  // address, 0 = none
        std::size_t pending = 0;
        bool local_exists = false;
        std::uint64_t local_version = 0;
    };
    auto gather = std::make_shared<Gather>();
    gather->newest = newest;
    gather->pending = replicas.size();
    gather->local_exists = local.ok();
    gather->local_version = local ? local->version : 0;
    const std::string key = request.key;
    auto finish = [this, gather, answer, key]() {
        answer(gather->newest);
        if (!gather->newest.exists) return;
        const storage::Record& best = gather->newest.record;
        if (!gather->local_exists || gather->local_version < best.version) {
            (void)store_->apply(key, best);
        }
        for (const auto& [address, version] : gather->versions) {
            if (version >= best.version) continue;
            peers_->call(
                address,
                [key, wire = to_wire(best), k = cluster_key()](std::uint64_t rid) {
                    return net::encode_admin(net::ReplicateRequest{rid, key, wire}, k);
                },
                [](Result<net::Frame>) {}, options_.replica_timeout);
        }
    };
    for (const auto& address : replicas) {
        peers_->call(
            address,
            [key, k = cluster_key()](std::uint64_t rid) {
                return net::encode_admin(net::ReadReplicaRequest{rid, key}, k);
            },
            [gather, finish, address](Result<net::Frame> reply_frame) {
                if (reply_frame && reply_frame->type == net::admin_type<net::ReadReplicaReply>()) {
                    auto r = net::decode_admin<net::ReadReplicaReply>(reply_frame->payload);
                    if (r) {
                        gather->versions.emplace_back(address, r->exists ? r->record.version : 0);
                        if (r->exists) gather->newest.offer(from_wire(r->record));
                    }
                }
                if (--gather->pending == 0) finish();
            },
            options_.replica_timeout);
    }
}

void Node::on_read_replica(const ConnectionPtr& from, const net::ReadReplicaRequest& request) {
    auto local = store_->read(request.key);
    net::ReadReplicaReply r;
    r.request_id = request.request_id;
    if (local) {
        r.exists = true;
        r.record = to_wire(*local);
    } else if (local.code() != Errc::not_found) {
        reply_error(from, request.request_id, local.error());
        return;
    }
    reply(from, r);
}

}  // namespace chordkv
