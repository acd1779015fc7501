#include "net/address.hpp"

#include <charconv>

namespace chordkv::net {

std::string HostPort::to_string() const {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<HostPort> parse_host_port(std::string_view text, std::uint16_t default_port,
                                 bool allow_port_zero) {
    using R = Result<HostPort>;
    const auto bad = [&](const std::string& why) {
        return R(Errc::invalid_argument, "address '" + std::string(text) + "': " + why);
    };
    if (text.empty()) return bad("empty; expected HOST:PORT");

    HostPort out;
    std::string_view port_text;
    if (text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return bad("missing ']' after IPv6 address");
        out.host = std::string(text.substr(1, close - 1));
        const auto rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return bad("expected ':' after ']'");
            port_text = rest.substr(1);
            if (port_text.empty()) return bad("missing port after ':'");
        }
    } else {
        const auto colon = text.rfind(':');
        if (colon != std::string_view::npos && text.find(':') != colon) {
            return bad("IPv6 addresses need brackets: [ADDR]:PORT");
        }
        out.host = std::string(text.substr(0, colon));
        if (colon != std::string_view::npos) {
            port_text = text.substr(colon + 1);
            if (port_text.empty()) return bad("missing port after ':'");
        }
    }
    if (out.host.empty()) return bad("missing host");
    for (char c : out.host) {
        if (c == ' ' || c == '/' || c == '\t' || c == '\n') return bad("invalid character in host");
    }
    if (port_text.empty()) {
        if (default_port == 0) return bad("missing port; expected HOST:PORT");
        out.port = default_port;
        return out;
    }
    unsigned value = 0;
    const auto* end = port_text.data() + port_text.size();
    const auto [ptr, ec] = std::from_chars(port_text.data(), end, value);
    if (ec != std::errc() || ptr != end || (value == 0 && !allow_port_zero) || value > 65535) {
        return bad("port must be a number in 1..65535");
    }
    out.port = static_cast<std::uint16_t>(value);
    return out;
}

}  // namespace chordkv::net
