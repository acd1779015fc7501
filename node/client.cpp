#include "node/client.hpp"

#include <algorithm>
#include <type_traits>

#include "net/admin_codec.hpp"
#include "node/reply.hpp"

namespace chordkv {

Client::Client(ClientOptions options) : options_(std::move(options)), view_(options_.ring_view) {}

Result<net::RequestClient*> Client::connection(const std::string& address) {
    using R = Result<net::RequestClient*>;
    if (auto it = connections_.find(address); it != connections_.end()) return it->second.get();
    auto c = net::RequestClient::connect(address, options_.timeout, options_.cluster_key);
    if (!c) return R(c.error());
    (*c)->set_busy_poll(options_.busy_poll);
    auto* raw = c->get();
    connections_.emplace(address, std::move(c).value());
    return raw;
}

template <typename Request>
Result<net::Frame> Client::exchange(const std::string& address, Request& request) {
    auto c = connection(address);
    if (!c) return Result<net::Frame>(c.error());
    request.request_id = next_request_id_++;
    if constexpr (std::is_same_v<Request, net::PutRequest>) {
        request.deadline_ms = net::deadline_after(options_.timeout);
    }
    auto frame = (*c)->call(net::encode_admin(request, (*c)->key()), options_.timeout);
    if (!frame) connections_.erase(address);  // the stream is in an unknown state
    return frame;
}

void Client::refresh_view() {
    using Clock = RingView::Clock;
    if (!options_.smart_routing || !view_.walk_due(Clock::now())) return;
    ++stats_.ring_walks;
    RingWalk walk = view_.start_walk(options_.seeds, Clock::now());
    // Bounded by the walk: walk_processes_max addresses, none handed out after walk_timeout.
    while (auto address = walk.next(Clock::now())) {
        net::InfoRequest request;
        auto frame = exchange(*address, request);
        auto info = frame ? decode_reply<net::InfoReply>(*frame, *address)
                          : Result<net::InfoReply>(frame.error());
        if (info && info->request_id == request.request_id) {
            walk.on_reply(*address, *info);
        } else {
            if (info) connections_.erase(*address);  // answered another request
            walk.on_failure(*address);
        }
    }
    view_.finish_walk(walk);
}

std::string Client::route(std::string_view key) {
    refresh_view();
    if (options_.smart_routing) {
        if (const std::string* owner = view_.owner(chord::NodeId::hash(key))) return *owner;
    }
    return options_.seeds.empty() ? std::string() : options_.seeds.front();
}

ClientStats Client::stats() const {
    ClientStats out = stats_;
    out.view_vnodes = view_.size();
    out.view_processes = view_.processes();
    return out;
}

template <typename Reply, typename Request>
Result<Reply> Client::ask_owner(Request request) {
    using R = Result<Reply>;
    if (options_.seeds.empty()) return R(Errc::invalid_argument, "no seed address");
    const chord::NodeId key_id = chord::NodeId::hash(request.key);
    refresh_view();

    // Where to go when the current address fails: the seeds in order, each at most once, none
    // that already failed during this operation.
    std::vector<std::string> failed;
    std::size_t next_seed = 0;
    auto next_fallback = [&]() -> std::optional<std::string> {
        while (next_seed < options_.seeds.size()) {
            const std::string& seed = options_.seeds[next_seed++];
            if (std::find(failed.begin(), failed.end(), seed) != failed.end()) continue;
            ++stats_.seed_fallbacks;
            return seed;
        }
        return std::nullopt;
    };

    std::string address;
    if (const std::string* owner = options_.smart_routing ? view_.owner(key_id) : nullptr) {
        address = *owner;
    } else {
        address = *next_fallback();  // seeds is not empty
    }
    Error last(Errc::unreachable, "no seed answered");
    int redirects = 0;
    // Bounded: each pass follows one of at most redirects_max redirects from the current
    // starting point, moves on to a seed not tried yet, or returns.
    for (;;) {
        ++stats_.requests;
        auto frame = exchange(address, request);
        bool give_up_here = false;
        if (!frame) {
            last = frame.error();
            if (options_.smart_routing) view_.on_unreachable(address);
            failed.push_back(address);
            give_up_here = true;
        } else if (frame->type == net::admin_type<net::Redirect>()) {
            auto redirect = net::decode_admin<net::Redirect>(frame->payload);
            if (!redirect) return R(redirect.error());
            if (redirect->owner_address.empty()) {
                return R(Errc::malformed_message, address + " redirected to no address");
            }
            if (options_.smart_routing) {
                view_.on_redirect(address, key_id, redirect->owner_id, redirect->owner_address);
            }
            if (redirects < options_.redirects_max) {
                ++redirects;
                ++stats_.redirects_followed;
                address = redirect->owner_address;
                continue;
            }
            last = Error(Errc::unreachable, "more than " + std::to_string(options_.redirects_max) +
                                                " redirects; the ring is changing");
            give_up_here = true;
        }
        if (give_up_here) {
            auto fallback = next_fallback();
            if (!fallback) return R(last);
            address = std::move(*fallback);
            redirects = 0;
            continue;
        }
        auto reply = decode_reply<Reply>(*frame, address);
        if (reply && reply->request_id != request.request_id) {
            connections_.erase(address);
            return R(Errc::malformed_message, address + " answered another request");
        }
        if (!reply && reply.code() == Errc::shutting_down) {
            // A process between its vnodes' leave and its exit: it never applied the
            // request, so another address may serve it (the ring has moved on).
            last = reply.error();
            if (options_.smart_routing) view_.on_unreachable(address);
            failed.push_back(address);
            auto fallback = next_fallback();
            if (!fallback) return R(last);
            address = std::move(*fallback);
            redirects = 0;
            continue;
        }
        return reply;
    }
}

Result<std::uint64_t> Client::put(std::string_view key, std::string_view value) {
    auto reply =
        ask_owner<net::PutReply>(net::PutRequest{0, std::string(key), std::string(value), false});
    if (!reply) return Result<std::uint64_t>(reply.error());
    return reply->version;
}

Result<std::uint64_t> Client::del(std::string_view key) {
    auto reply = ask_owner<net::PutReply>(net::PutRequest{0, std::string(key), {}, true});
    if (!reply) return Result<std::uint64_t>(reply.error());
    return reply->version;
}

Result<GetResult> Client::get(std::string_view key, bool quorum) {
    auto reply = ask_owner<net::GetReply>(net::GetRequest{0, std::string(key), quorum});
    if (!reply) return Result<GetResult>(reply.error());
    return GetResult{reply->found, reply->version, std::move(reply->value)};
}

}  // namespace chordkv
