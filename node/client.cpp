#include "node/client.hpp"

#include "net/admin_codec.hpp"

namespace chordkv {

Client::Client(ClientOptions options) : options_(std::move(options)) {}

Result<net::RequestClient*> Client::connection(const std::string& address) {
    using R = Result<net::RequestClient*>;
    if (auto it = connections_.find(address); it != connections_.end()) return it->second.get();
    auto c = net::RequestClient::connect(address, options_.timeout, options_.cluster_key);
    if (!c) return R(c.error());
    auto* raw = c->get();
    connections_.emplace(address, std::move(c).value());
    return raw;
}

template <typename Reply, typename Request>
Result<Reply> Client::ask_owner(Request request) {
    using R = Result<Reply>;
    if (options_.seeds.empty()) return R(Errc::invalid_argument, "no seed address");
    Error last(Errc::unreachable, "no seed answered");
    // Seeds in turn for the first hop; redirects after that.
    for (const auto& seed : options_.seeds) {
        std::string address = seed;
        for (int hop = 0; hop <= options_.redirects_max; ++hop) {
            auto c = connection(address);
            if (!c) {
                last = c.error();
                break;
            }
            request.request_id = next_request_id_++;
            auto frame = (*c)->call(net::encode_admin(request, (*c)->key()), options_.timeout);
            if (!frame) {
                connections_.erase(address);  // the stream is in an unknown state
                last = frame.error();
                break;
            }
            if (frame->type == net::admin_type<net::Redirect>()) {
                auto redirect = net::decode_admin<net::Redirect>(frame->payload);
                if (!redirect) return R(redirect.error());
                address = redirect->owner_address;
                last =
                    Error(Errc::unreachable, "more than " + std::to_string(options_.redirects_max) +
                                                 " redirects; the ring is changing");
                continue;
            }
            if (frame->type == net::admin_type<net::ErrorReply>()) {
                auto e = net::decode_admin<net::ErrorReply>(frame->payload);
                if (!e) return R(e.error());
                return R(Errc(e->code), address + ": " + e->message);
            }
            if (frame->type != net::admin_type<Reply>()) {
                return R(Errc::malformed_message,
                         address + " answered with type " + std::to_string(frame->type));
            }
            auto reply = net::decode_admin<Reply>(frame->payload);
            if (reply && reply->request_id != request.request_id) {
                connections_.erase(address);
                return R(Errc::malformed_message, address + " answered another request");
            }
            return reply;
        }
    }
    return R(last);
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
