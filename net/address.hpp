// Host:port addresses as users type them on the command line and peers advertise them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "chord/result.hpp"

namespace chordkv::net {

struct HostPort {
    std::string host;  // a name or an IP literal, without brackets
    std::uint16_t port = 0;

    // "host:port", with brackets around IPv6 literals: "[::1]:7400".
    std::string to_string() const;
    friend bool operator==(const HostPort& a, const HostPort& b) {
        return a.host == b.host && a.port == b.port;
    }
};

// Parses "host:port", "[v6]:port" or, when default_port is non-zero, a bare "host". Port 0 is
// refused unless allow_port_zero (a listen address: "any free port").
// Errors: invalid_argument with a message naming the input and what is wrong with it.
Result<HostPort> parse_host_port(std::string_view text, std::uint16_t default_port = 0,
                                 bool allow_port_zero = false);

}  // namespace chordkv::net
