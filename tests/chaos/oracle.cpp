#include "oracle.hpp"

#include <algorithm>
#include <cstdio>

namespace chordkv::chaos {

namespace {

constexpr std::size_t kValueShownMax = 40;

std::string seconds_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%8.3f", s);
    return buf;
}

}  // namespace

std::string describe(const Observed& value) {
    if (!value) return "not found";
    if (value->size() <= kValueShownMax) return "'" + *value + "'";
    return "'" + value->substr(0, kValueShownMax) + "...'";
}

KeyOracle::KeyOracle(std::size_t keys, std::size_t events_max)
    : events_max_(events_max), keys_(keys) {}

void KeyOracle::note(std::size_t key, double at_s, std::string what) {
    auto& events = keys_[key].events;
    events.push_back({at_s, std::move(what)});
    while (events.size() > events_max_) events.pop_front();
}

void KeyOracle::on_write_acked(std::size_t key, const Observed& value, std::uint64_t version,
                               double at_s) {
    KeyHistory& h = keys_[key];
    h.acked = value;
    h.acked_version = version;
    h.ever_acked = true;
    h.maybe.clear();
    h.acked_writes.emplace_back(value, version);
    ++h.writes;
    note(key, at_s,
         std::string(value ? "put " : "del ") + describe(value) +
             " ok v=" + std::to_string(version));
}

void KeyOracle::on_write_failed(std::size_t key, const Observed& value, const std::string& error,
                                double at_s) {
    KeyHistory& h = keys_[key];
    h.maybe.push_back(value);
    ++h.writes;
    note(key, at_s, std::string(value ? "put " : "del ") + describe(value) + " failed: " + error);
}

bool KeyOracle::read_allowed(std::size_t key, const Observed& got) const {
    const KeyHistory& h = keys_[key];
    if (got == h.acked) return true;
    return std::find(h.maybe.begin(), h.maybe.end(), got) != h.maybe.end();
}

bool KeyOracle::on_read(std::size_t key, const Observed& got, std::uint64_t version, double at_s) {
    const bool allowed = read_allowed(key, got);
    note(key, at_s,
         "get " + describe(got) + " v=" + std::to_string(version) + (allowed ? "" : " STALE"));
    return allowed;
}

void KeyOracle::on_read_failed(std::size_t key, const std::string& error, double at_s) {
    note(key, at_s, "get failed: " + error);
}

std::optional<std::uint64_t> KeyOracle::acked_version(std::size_t key,
                                                      const Observed& value) const {
    const auto& writes = keys_[key].acked_writes;
    for (auto it = writes.rbegin(); it != writes.rend(); ++it) {
        if (it->first == value) return it->second;
    }
    return std::nullopt;
}

std::string KeyOracle::expected(std::size_t key) const {
    const KeyHistory& h = keys_[key];
    std::string out = describe(h.acked);
    if (h.ever_acked) out += " v=" + std::to_string(h.acked_version);
    if (!h.maybe.empty()) {
        out += " (or";
        for (std::size_t i = 0; i < h.maybe.size(); ++i) {
            out += (i ? ", " : " ") + describe(h.maybe[i]);
        }
        out += ")";
    }
    return out;
}

std::string KeyOracle::events(std::size_t key, const std::string& indent) const {
    std::string out;
    for (const auto& e : keys_[key].events) {
        out += indent + "t+" + seconds_text(e.at_s) + " s  " + e.what + "\n";
    }
    return out;
}

}  // namespace chordkv::chaos
