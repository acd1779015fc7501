// ReplicationQueue: an owner's replication of client writes, gathered per replica and per turn
// of the io_context (DESIGN.md "Data path"; the message is net/data.hpp's
// ReplicateWritesRequest).
//
//   add(address, entry, done) ─► queued[address] ─┐   the first add() of a turn posts a flush
//   add(address, entry, done) ─► queued[address] ─┤
//                                                 ▼
//   flush ─► per address: requests of at most request_entries_max entries and about
//            request_bytes_max bytes ─► PeerPool::call ─► reply ─► every entry's done
//
// So the writes that the reads of one turn brought in (one client's pipeline, or many clients
// at once) cost one message, one send() and one RocksDB batch per replica, instead of one of
// each per write. A write waits for no timer: only for the handlers already queued in the
// io_context when it was added.
//
// Completion: each add()'s `done` is called exactly once, never from inside add(): with
// success when the replica answered ReplicateWritesReply (it holds the entry at its version
// or newer, written through its WAL), else with the error: the PeerPool's (timed_out,
// unreachable, busy, shutting_down, ...), the replica's ErrorReply (its code and message), or
// malformed_message for an answer of any other type. Destroying the queue completes the writes
// not yet handed to the pool with shutting_down (inline); those in the pool complete as its
// calls do.
//
// Threading: like PeerPool, not thread-safe: use it on the thread that runs the io_context.
// The pool must outlive the queue.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chord/result.hpp"
#include "net/data.hpp"
#include "net/peer_pool.hpp"

namespace chordkv::net {

struct ReplicationQueueOptions {
    // How long a replica may take to answer one request. Default 2 s (NodeOptions
    // replica_timeout).
    std::chrono::milliseconds timeout{2000};
    // Entries per request; more queued for one replica go in further requests. Default 512.
    std::size_t request_entries_max = 512;
    // Bytes of keys and values per request (soft: a request holds at least one entry, so one
    // value at the store's limit still goes, alone). Default 1 MiB.
    std::size_t request_bytes_max = std::size_t{1} << 20;
};

struct ReplicationQueueStats {
    std::uint64_t entries = 0;   // entries added
    std::uint64_t requests = 0;  // ReplicateWritesRequests handed to the pool
};

class ReplicationQueue {
public:
    // The outcome of one entry (see "Completion").
    using Done = std::function<void(const Status& status)>;

    ReplicationQueue(boost::asio::io_context& io, PeerPool& pool,
                     ReplicationQueueOptions options = {});
    ~ReplicationQueue();
    ReplicationQueue(const ReplicationQueue&) = delete;
    ReplicationQueue& operator=(const ReplicationQueue&) = delete;

    // Queues `entry` for the replica at `address` ("host:port"); it is sent with the other
    // entries queued for that address when the flush runs.
    void add(const std::string& address, SyncEntry entry, Done done);

    // Entries waiting for the flush.
    std::size_t queued() const noexcept;
    const ReplicationQueueStats& stats() const noexcept { return stats_; }
    const ReplicationQueueOptions& options() const noexcept { return options_; }

private:
    // The entries of one request (or, while queued, of one address) and their callbacks.
    struct Group {
        ReplicateWritesRequest request;
        std::vector<Done> dones;
        std::size_t bytes = 0;
    };

    void flush();
    void send(const std::string& address, Group group);

    boost::asio::io_context& io_;
    PeerPool& pool_;
    ReplicationQueueOptions options_;
    // Few addresses (the replicas of this process's arcs), so a vector searched in order.
    std::vector<std::pair<std::string, Group>> queued_;
    bool flush_posted_ = false;
    ReplicationQueueStats stats_;
    // The posted flush holds a weak_ptr to this and does nothing once the queue is gone.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace chordkv::net
