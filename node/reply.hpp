// decode_reply<T>: what a node answered to a TCP request, as T — or as the error its
// ErrorReply carries (net/admin.hpp) — for the clients of the data path (chordkv::Client,
// chord-bench). Redirects are the caller's to handle before this.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "chord/result.hpp"
#include "net/admin_codec.hpp"
#include "net/request_client.hpp"

namespace chordkv {

// The frame's message as T; the node's ErrorReply as an error with its code and message
// (prefixed with `from`, the address that answered); malformed_message for a frame of any
// other type or one that does not decode.
// The same for a frame's type and payload where they were read (a FrameView's, say).
template <typename T>
Result<T> decode_reply(std::uint8_t type, std::string_view payload, const std::string& from) {
    if (type == net::admin_type<net::ErrorReply>()) {
        auto e = net::decode_admin<net::ErrorReply>(payload);
        if (!e) return Result<T>(e.error());
        return Result<T>(Errc(e->code), from + ": " + e->message);
    }
    if (type != net::admin_type<T>()) {
        return Result<T>(Errc::malformed_message,
                         from + " answered with type " + std::to_string(type));
    }
    return net::decode_admin<T>(payload);
}

template <typename T>
Result<T> decode_reply(const net::Frame& frame, const std::string& from) {
    return decode_reply<T>(frame.type, frame.payload, from);
}

}  // namespace chordkv
