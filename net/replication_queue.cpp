#include "net/replication_queue.hpp"

#include <boost/asio/post.hpp>

#include "net/admin_codec.hpp"

namespace chordkv::net {

namespace asio = boost::asio;

namespace {

// What one entry costs in a request, for request_bytes_max: its key and value plus the
// archive's lengths, version and flag.
std::size_t entry_bytes(const SyncEntry& entry) {
    constexpr std::size_t kEntryOverheadBytes = 32;
    return entry.key.size() + entry.record.value.size() + kEntryOverheadBytes;
}

// The outcome of a request from the replica's answer (see "Completion" in the header).
Status outcome(const std::string& address, const Result<Frame>& answer) {
    if (!answer) return Status(answer.error());
    if (answer->type == admin_type<ReplicateWritesReply>()) {
        if (!decode_admin<ReplicateWritesReply>(answer->payload)) {
            return Status(Errc::malformed_message,
                          address + ": ReplicateWritesReply does not decode");
        }
        return {};
    }
    if (answer->type == admin_type<ErrorReply>()) {
        auto e = decode_admin<ErrorReply>(answer->payload);
        if (!e) return Status(e.error());
        return Status(Errc(e->code), address + ": " + e->message);
    }
    return Status(
        Errc::malformed_message,
        address + " answered a ReplicateWritesRequest with type " + std::to_string(answer->type));
}

}  // namespace

ReplicationQueue::ReplicationQueue(asio::io_context& io, PeerPool& pool,
                                   ReplicationQueueOptions options)
    : io_(io), pool_(pool), options_(options) {}

ReplicationQueue::~ReplicationQueue() {
    // Taken out first: a callback may add again (it would be queued and never sent).
    auto queued = std::move(queued_);
    queued_.clear();
    const Status status(Errc::shutting_down, "the replication queue is closed");
    for (auto& [address, group] : queued) {
        for (auto& done : group.dones) done(status);
    }
}

std::size_t ReplicationQueue::queued() const noexcept {
    std::size_t n = 0;
    for (const auto& entry : queued_) n += entry.second.dones.size();
    return n;
}

void ReplicationQueue::add(const std::string& address, SyncEntry entry, Done done) {
    ++stats_.entries;
    auto it = queued_.begin();
    while (it != queued_.end() && it->first != address) ++it;
    if (it == queued_.end()) {
        queued_.emplace_back(address, Group{});
        it = std::prev(queued_.end());
    }
    Group& group = it->second;
    group.bytes += entry_bytes(entry);
    group.request.entries.push_back(std::move(entry));
    group.dones.push_back(std::move(done));
    if (flush_posted_) return;
    flush_posted_ = true;
    asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
        if (alive.expired()) return;
        flush_posted_ = false;
        flush();
    });
}

void ReplicationQueue::flush() {
    // Taken out first: a failure the pool delivers is posted, but a callback may still add.
    auto queued = std::move(queued_);
    queued_.clear();
    for (auto& [address, all] : queued) {
        const std::size_t n = all.request.entries.size();
        if (n == 0) continue;
        if (n <= options_.request_entries_max && all.bytes <= options_.request_bytes_max) {
            send(address, std::move(all));
            continue;
        }
        // Split in order, each request within both bounds (and at least one entry).
        Group part;
        for (std::size_t i = 0; i < n; ++i) {
            SyncEntry& entry = all.request.entries[i];
            const std::size_t bytes = entry_bytes(entry);
            if (!part.dones.empty() && (part.dones.size() >= options_.request_entries_max ||
                                        part.bytes + bytes > options_.request_bytes_max)) {
                send(address, std::move(part));
                part = Group{};
            }
            part.bytes += bytes;
            part.request.entries.push_back(std::move(entry));
            part.dones.push_back(std::move(all.dones[i]));
        }
        send(address, std::move(part));
    }
}

void ReplicationQueue::send(const std::string& address, Group group) {
    ++stats_.requests;
    auto shared = std::make_shared<Group>(std::move(group));
    const std::string* key = pool_.key();
    pool_.call(
        address,
        [shared, key](std::uint64_t request_id) {
            shared->request.request_id = request_id;
            return encode_admin(shared->request, key);
        },
        [shared, address](Result<Frame> answer) {
            const Status status = outcome(address, answer);
            for (auto& done : shared->dones) done(status);
        },
        options_.timeout);
}

}  // namespace chordkv::net
