// chordctl: talk to a chordkv cluster through any of its nodes.
//
//   chordctl [--node HOST:PORT] [--json] [--timeout MS] ring
//   chordctl [--node HOST:PORT] [--json] [--timeout MS] lookup KEY
//   chordctl [--node HOST:PORT] [--json] [--timeout MS] stats
//   chordctl [--node HOST:PORT] put KEY VALUE|-      (- reads the value from stdin)
//   chordctl [--node HOST:PORT] [--quorum] get KEY   (raw value on stdout)
//   chordctl [--node HOST:PORT] del KEY
//
// Exit codes: 0 success, 1 get: not found, 2 error (bad usage, unreachable node, broken ring).
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "chord/node_id.hpp"
#include "chord/protocol.hpp"
#include "net/admin_codec.hpp"
#include "net/cluster_key.hpp"
#include "net/request_client.hpp"
#include "node/client.hpp"

namespace po = boost::program_options;
using chordkv::Errc;
using chordkv::Error;
using chordkv::Result;
using chordkv::chord::NodeId;
using chordkv::chord::Peer;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
// Redirects followed before giving up (the ring is changing faster than we can follow).
constexpr int kRedirectsMax = 4;
constexpr int kExitError = 2;
// A walk longer than this is not a ring we can print (or is a loop that never closes).
constexpr std::size_t kRingVnodesMax = 1'000'000;

struct Settings {
    std::string node = "127.0.0.1:7400";
    bool json = false;
    std::chrono::milliseconds timeout{5000};
    std::string cluster_key;  // empty: frames carry no MAC
    bool quorum = false;
};

std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out.push_back(static_cast<char>(c));
                }
        }
    }
    return out + "\"";
}

std::string json_peer(const Peer& p) {
    return "{\"id\":" + json_string(p.id.to_hex()) + ",\"address\":" + json_string(p.address) + "}";
}

const char* state_name(std::uint8_t state) {
    if (state > static_cast<std::uint8_t>(chordkv::chord::MemberState::left)) return "unknown";
    return chordkv::chord::member_state_name(static_cast<chordkv::chord::MemberState>(state));
}

int fail(const std::string& message) {
    std::cerr << "chordctl: " << message << "\n";
    return kExitError;
}

// Sends `request` and decodes the reply as T (or the node's ErrorReply).
template <typename T, typename Request>
Result<T> ask(chordkv::net::RequestClient& client, const Request& request,
              std::chrono::milliseconds timeout) {
    auto frame = client.call(chordkv::net::encode_admin(request, client.key()), timeout);
    if (!frame) return Result<T>(frame.error());
    if (frame->type == static_cast<std::uint8_t>(chordkv::net::AdminType::error_reply)) {
        auto e = chordkv::net::decode_admin<chordkv::net::ErrorReply>(frame->payload);
        if (!e) return Result<T>(e.error());
        return Result<T>(Errc(e->code), client.address() + ": " + e->message);
    }
    if (frame->type != chordkv::net::admin_type<T>()) {
        return Result<T>(Errc::malformed_message,
                         client.address() + " answered with type " + std::to_string(frame->type));
    }
    return chordkv::net::decode_admin<T>(frame->payload);
}

Result<chordkv::net::InfoReply> fetch_info(const std::string& address, const Settings& s) {
    auto client = chordkv::net::RequestClient::connect(address, s.timeout, s.cluster_key);
    if (!client) return Result<chordkv::net::InfoReply>(client.error());
    return ask<chordkv::net::InfoReply>(**client, chordkv::net::InfoRequest{1}, s.timeout);
}

int cmd_ring(const Settings& s) {
    std::map<std::string, chordkv::net::InfoReply> processes;
    auto info_of = [&](const std::string& address) -> Result<const chordkv::net::InfoReply*> {
        if (auto it = processes.find(address); it != processes.end()) return &it->second;
        auto info = fetch_info(address, s);
        if (!info) return Result<const chordkv::net::InfoReply*>(info.error());
        return &processes.emplace(address, std::move(info).value()).first->second;
    };
    auto first = info_of(s.node);
    if (!first) return fail(first.error().message());
    const chordkv::net::VnodeInfo* start = nullptr;
    for (const auto& v : (*first)->vnodes) {
        if (v.state == static_cast<std::uint8_t>(chordkv::chord::MemberState::member)) {
            start = &v;
            break;
        }
    }
    if (!start) return fail(s.node + " has no vnode that is a ring member");

    // Walk successor pointers from `start` until the walk closes.
    struct Row {
        Peer self;
        chordkv::net::VnodeInfo info;
    };
    std::vector<Row> rows;
    std::set<NodeId> seen;
    Peer at{start->id, (*first)->address};
    for (;;) {
        if (seen.count(at.id) > 0) {
            if (at.id != start->id) {
                return fail("the ring does not close: the walk from " + start->id.short_hex() +
                            " loops back to " + at.id.short_hex());
            }
            break;
        }
        if (rows.size() >= kRingVnodesMax) return fail("ring walk exceeded its bound");
        auto info = info_of(at.address);
        if (!info) return fail("ring walk reached " + at.address + ": " + info.error().message());
        const chordkv::net::VnodeInfo* v = nullptr;
        for (const auto& candidate : (*info)->vnodes) {
            if (candidate.id == at.id) v = &candidate;
        }
        if (!v) return fail(at.address + " has no vnode " + at.id.to_hex());
        if (v->successors.empty()) return fail("vnode " + at.id.to_hex() + " has no successor");
        seen.insert(at.id);
        rows.push_back(Row{at, *v});
        at = v->successors.front();
    }

    // Share of the ring: the arc (previous vnode in the walk, vnode].
    std::vector<double> shares(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& prev = rows[(i + rows.size() - 1) % rows.size()].self.id;
        shares[i] = chordkv::chord::ring_share(prev, rows[i].self.id);
    }
    if (s.json) {
        std::cout << "[";
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const auto& r = rows[i];
            std::cout << (i ? ",\n " : "\n ") << "{\"id\":" << json_string(r.self.id.to_hex())
                      << ",\"address\":" << json_string(r.self.address) << ",\"predecessor\":"
                      << (r.info.predecessor ? json_peer(*r.info.predecessor) : "null")
                      << ",\"successors\":[";
            for (std::size_t j = 0; j < r.info.successors.size(); ++j) {
                std::cout << (j ? "," : "") << json_peer(r.info.successors[j]);
            }
            std::cout << "],\"share\":" << shares[i] << "}";
        }
        std::cout << "\n]\n";
        return kExitOk;
    }
    std::printf("%-12s %-22s %-12s %-12s %8s\n", "vnode", "address", "predecessor", "successor",
                "share");
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        std::printf("%-12s %-22s %-12s %-12s %7.2f%%\n", r.self.id.short_hex(10).c_str(),
                    r.self.address.c_str(),
                    r.info.predecessor ? r.info.predecessor->id.short_hex(10).c_str() : "-",
                    r.info.successors.front().id.short_hex(10).c_str(), 100.0 * shares[i]);
    }
    std::printf("%zu vnodes on %zu processes\n", rows.size(), processes.size());
    return kExitOk;
}

int cmd_lookup(const Settings& s, const std::string& key) {
    auto client = chordkv::net::RequestClient::connect(s.node, s.timeout, s.cluster_key);
    if (!client) return fail(client.error().message());
    auto reply =
        ask<chordkv::net::LookupReply>(**client, chordkv::net::LookupRequest{1, key}, s.timeout);
    if (!reply) return fail("lookup: " + reply.error().message());
    if (s.json) {
        std::cout << "{\"key_id\":" << json_string(reply->key_id.to_hex())
                  << ",\"owner\":" << json_peer(reply->owner) << ",\"hops\":" << reply->hops
                  << ",\"timeouts\":" << reply->timeouts << ",\"replicas\":[";
        for (std::size_t i = 0; i < reply->replicas.size(); ++i) {
            std::cout << (i ? "," : "") << json_peer(reply->replicas[i]);
        }
        std::cout << "]}\n";
        return kExitOk;
    }
    std::cout << "key id  " << reply->key_id.to_hex() << "\n"
              << "owner   " << reply->owner.id.to_hex() << " at " << reply->owner.address << "\n"
              << "hops    " << reply->hops << " (" << reply->timeouts << " timed out)\n";
    return kExitOk;
}

chordkv::Client client_for(const Settings& s) {
    chordkv::ClientOptions options;
    options.seeds = {s.node};
    options.timeout = s.timeout;
    options.cluster_key = s.cluster_key;
    options.redirects_max = kRedirectsMax;
    return chordkv::Client(options);
}

int cmd_put(const Settings& s, const std::string& key, const std::string& value, bool del) {
    auto client = client_for(s);
    auto version = del ? client.del(key) : client.put(key, value);
    if (!version) return fail((del ? "del: " : "put: ") + version.error().message());
    if (s.json) std::cout << "{\"version\":" << *version << "}\n";
    return kExitOk;
}

int cmd_get(const Settings& s, const std::string& key) {
    auto client = client_for(s);
    auto result = client.get(key, s.quorum);
    if (!result) return fail("get: " + result.error().message());
    if (!result->found) return kExitNotFound;
    std::cout.write(result->value.data(), static_cast<std::streamsize>(result->value.size()));
    std::cout.flush();
    return kExitOk;
}

int cmd_stats(const Settings& s) {
    auto info = fetch_info(s.node, s);
    if (!info) return fail(info.error().message());
    if (s.json) {
        std::cout << "{\"address\":" << json_string(info->address)
                  << ",\"version\":" << json_string(info->version)
                  << ",\"datagrams_received\":" << info->datagrams_received
                  << ",\"frames_dropped\":" << info->frames_dropped
                  << ",\"frames_unauthenticated\":" << info->frames_unauthenticated
                  << ",\"tcp_connections_dropped\":" << info->tcp_connections_dropped
                  << ",\"vnodes\":[";
        for (std::size_t i = 0; i < info->vnodes.size(); ++i) {
            const auto& v = info->vnodes[i];
            std::cout << (i ? "," : "") << "\n {\"id\":" << json_string(v.id.to_hex())
                      << ",\"state\":" << json_string(state_name(v.state))
                      << ",\"fingers_set\":" << v.fingers_set
                      << ",\"lookups_started\":" << v.lookups_started
                      << ",\"lookups_failed\":" << v.lookups_failed
                      << ",\"lookup_hops\":" << v.lookup_hops
                      << ",\"rpc_timeouts\":" << v.rpc_timeouts << "}";
        }
        std::cout << "\n]}\n";
        return kExitOk;
    }
    std::cout << info->address << " (" << info->version << ")\n"
              << "datagrams received " << info->datagrams_received << ", frames dropped "
              << info->frames_dropped << ", unauthenticated " << info->frames_unauthenticated
              << "\n";
    for (const auto& v : info->vnodes) {
        std::printf("  %s %-8s fingers %3u lookups %llu (failed %llu) rpc timeouts %llu\n",
                    v.id.short_hex(10).c_str(), state_name(v.state), v.fingers_set,
                    static_cast<unsigned long long>(v.lookups_started),
                    static_cast<unsigned long long>(v.lookups_failed),
                    static_cast<unsigned long long>(v.rpc_timeouts));
    }
    return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    std::int64_t timeout_ms = s.timeout.count();
    std::string key_file;
    std::vector<std::string> command;
    po::options_description flags("chordctl [options] ring | lookup KEY | stats");
    flags.add_options()("help,h", "show this help")                                           //
        ("node", po::value(&s.node)->default_value(s.node), "HOST:PORT of any cluster node")  //
        ("json", po::bool_switch(&s.json), "machine-readable output")                         //
        ("timeout", po::value(&timeout_ms)->default_value(timeout_ms),
         "milliseconds to wait for each answer")                                          //
        ("cluster-key-file", po::value(&key_file), "the cluster's key, when it has one")  //
        ("quorum", po::bool_switch(&s.quorum), "get: read every replica, newest wins");
    po::options_description hidden;
    hidden.add_options()("command", po::value(&command));
    po::options_description all;
    all.add(flags).add(hidden);
    po::positional_options_description positional;
    positional.add("command", -1);
    try {
        po::variables_map vm;
        po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(),
                  vm);
        po::notify(vm);
        if (vm.count("help")) {
            std::cout << flags;
            return kExitOk;
        }
    } catch (const po::error& e) {
        return fail(std::string(e.what()));
    }
    if (timeout_ms <= 0) return fail("--timeout must be positive");
    if (!key_file.empty()) {
        auto key = chordkv::net::read_cluster_key_file(key_file);
        if (!key) return fail(key.error().message());
        s.cluster_key = std::move(key).value();
    }
    s.timeout = std::chrono::milliseconds(timeout_ms);
    if (command.empty()) return fail("no command; try ring, lookup KEY or stats (--help)");
    const std::string& verb = command.front();
    if (verb == "ring" && command.size() == 1) return cmd_ring(s);
    if (verb == "stats" && command.size() == 1) return cmd_stats(s);
    if (verb == "lookup" && command.size() == 2) return cmd_lookup(s, command[1]);
    if (verb == "lookup") return fail("usage: chordctl lookup KEY");
    if (verb == "put" && command.size() == 3) {
        std::string value = command[2];
        if (value == "-") {
            value.assign(std::istreambuf_iterator<char>(std::cin), {});
        }
        return cmd_put(s, command[1], value, false);
    }
    if (verb == "get" && command.size() == 2) return cmd_get(s, command[1]);
    if (verb == "del" && command.size() == 2) return cmd_put(s, command[1], {}, true);
    if (verb == "put" || verb == "get" || verb == "del") {
        return fail("usage: chordctl put KEY VALUE|- | get KEY | del KEY");
    }
    return fail("unknown command '" + verb + "'; try ring, lookup, stats, put, get or del");
}
