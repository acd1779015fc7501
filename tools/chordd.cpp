// chordd: the chordkv daemon. One process = one Node: V vnodes on one UDP+TCP port and one
// RocksDB data dir. Without --join it starts a new ring; with it, it joins through the seeds.
// SIGTERM or SIGINT = graceful leave (a second signal stops at once).
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/program_options.hpp>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "net/cluster_key.hpp"
#include "net/run_loop.hpp"
#include "node/node.hpp"

namespace po = boost::program_options;

namespace {

// Exit codes, distinct per cause so scripts can tell them apart.
constexpr int kExitUsage = 2;    // bad flag, config file or address
constexpr int kExitDataDir = 3;  // data dir cannot be created, opened or is inconsistent
constexpr int kExitNetwork = 4;  // cannot bind the listen address (e.g. port in use)
constexpr int kExitJoin = 5;     // no seed answered before the join timeout

// Largest --cache-mb accepted (1 TiB): catches a negative number, which the flag parser wraps
// to a huge unsigned one.
constexpr std::size_t kCacheMbMax = std::size_t{1} << 20;
// --write-buffer-mb bounds: RocksDB needs some room, and a memtable is held in memory (two
// while one is flushed) and replayed from the WAL after a crash.
constexpr std::size_t kWriteBufferMbMin = 1;
constexpr std::size_t kWriteBufferMbMax = 4096;
// Largest --busy-poll-us accepted (1 s; a negative number wraps above it).
constexpr std::uint32_t kBusyPollUsMax = 1'000'000;

struct Settings {
    std::string listen = "127.0.0.1:7400";
    std::string advertise;  // defaults to listen
    std::string join;       // comma-separated seeds
    std::string data_dir = "chordkv-data";
    std::uint32_t vnodes = 8;
    std::string vnode_placement = "balanced";  // NodeOptions::placement
    std::size_t successors = 8;
    std::size_t replicas = 3;
    std::size_t write_acks = 2;
    std::string cluster_key_file;
    std::int64_t join_timeout_ms = 30000;
    std::int64_t tombstone_grace_ms = 24 * 3600 * 1000;
    std::int64_t purge_interval_ms = 10 * 60 * 1000;
    std::int64_t handoff_timeout_ms = 120 * 1000;
    std::int64_t repair_interval_ms = 500;
    std::int64_t repair_full_interval_ms = 60 * 1000;
    std::size_t cache_mb = 64;         // KeyStoreOptions::cache_bytes in MiB
    std::size_t write_buffer_mb = 32;  // KeyStoreOptions::write_buffer_bytes in MiB
    std::uint32_t busy_poll_us = 0;    // net::run_busy
    bool sync_writes = false;          // KeyStoreOptions::sync_writes
    std::string log_level = "info";
    std::string config;
};

std::vector<std::string> split_commas(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

int run(const Settings& settings) {
    chordkv::NodeOptions options;
    options.listen = settings.listen;
    options.advertise = settings.advertise;
    options.join = split_commas(settings.join);
    options.data_dir = settings.data_dir;
    options.vnodes = settings.vnodes;
    if (settings.vnode_placement == "balanced") {
        options.placement = chordkv::VnodePlacement::balanced;
    } else if (settings.vnode_placement == "hashed") {
        options.placement = chordkv::VnodePlacement::hashed;
    } else {
        spdlog::error("--vnode-placement must be balanced or hashed, got '{}'",
                      settings.vnode_placement);
        return kExitUsage;
    }
    options.protocol.successors = settings.successors;
    options.replicas = settings.replicas;
    options.write_acks = settings.write_acks;
    options.join_timeout = std::chrono::milliseconds(settings.join_timeout_ms);
    if (settings.busy_poll_us > kBusyPollUsMax) {
        spdlog::error("--busy-poll-us must be at most {}, got {}", kBusyPollUsMax,
                      settings.busy_poll_us);
        return kExitUsage;
    }
    if (settings.cache_mb > kCacheMbMax) {
        spdlog::error("--cache-mb must be at most {}, got {}", kCacheMbMax, settings.cache_mb);
        return kExitUsage;
    }
    options.store.cache_bytes = settings.cache_mb << 20;
    if (settings.write_buffer_mb < kWriteBufferMbMin ||
        settings.write_buffer_mb > kWriteBufferMbMax) {
        spdlog::error("--write-buffer-mb must be in {}..{}, got {}", kWriteBufferMbMin,
                      kWriteBufferMbMax, settings.write_buffer_mb);
        return kExitUsage;
    }
    options.store.write_buffer_bytes = settings.write_buffer_mb << 20;
    options.store.sync_writes = settings.sync_writes;
    if (settings.successors == 0 || settings.successors > 64) {
        spdlog::error("--successors must be in 1..64, got {}", settings.successors);
        return kExitUsage;
    }
    for (const auto& [flag, value] :
         {std::pair{"--join-timeout", settings.join_timeout_ms},
          std::pair{"--tombstone-grace", settings.tombstone_grace_ms},
          std::pair{"--purge-interval", settings.purge_interval_ms},
          std::pair{"--handoff-timeout", settings.handoff_timeout_ms},
          std::pair{"--repair-interval", settings.repair_interval_ms},
          std::pair{"--repair-full-interval", settings.repair_full_interval_ms}}) {
        if (value <= 0) {
            spdlog::error("{} must be positive, got {}", flag, value);
            return kExitUsage;
        }
    }
    options.tombstone_grace = std::chrono::milliseconds(settings.tombstone_grace_ms);
    options.purge_interval = std::chrono::milliseconds(settings.purge_interval_ms);
    options.handoff_timeout = std::chrono::milliseconds(settings.handoff_timeout_ms);
    options.repair_interval = std::chrono::milliseconds(settings.repair_interval_ms);
    options.repair_full_interval = std::chrono::milliseconds(settings.repair_full_interval_ms);
    if (!settings.cluster_key_file.empty()) {
        auto key = chordkv::net::read_cluster_key_file(settings.cluster_key_file);
        if (!key) {
            spdlog::error("--cluster-key-file: {}", key.error().message());
            return kExitUsage;
        }
        options.transport.cluster_key = std::move(key).value();
    }

    boost::asio::io_context io(1);  // one thread runs it (Node's Threading note)
    auto opened = chordkv::Node::open(io, options);
    if (!opened) {
        const auto& error = opened.error();
        spdlog::error("{}", error.message());
        if (error.code() == chordkv::Errc::invalid_argument) return kExitUsage;
        if (error.code() == chordkv::Errc::storage_error ||
            error.code() == chordkv::Errc::corruption) {
            return kExitDataDir;
        }
        return kExitNetwork;
    }
    auto& node = **opened;
    spdlog::info("chordd {} listening on {}, {} vnodes, data in '{}'", node.advertise().to_string(),
                 settings.listen, options.vnodes, settings.data_dir);

    int exit_code = EXIT_SUCCESS;
    node.start([&](chordkv::Status status) {
        if (!status) {
            spdlog::error("cannot join the ring: {}", status.error().message());
            exit_code = kExitJoin;
            node.stop();
            io.stop();
            return;
        }
        spdlog::info("ready: {} vnodes are ring members ({})", node.vnode_ids().size(),
                     options.join.empty() ? "new ring" : "joined through " + settings.join);
    });

    // chordctl leave: the node hands its arcs over, leaves, and tells us when it has stopped.
    node.on_left([&](chordkv::Status status) {
        if (status) {
            spdlog::info("left the ring (chordctl leave); neighbours acknowledged");
        } else {
            spdlog::warn("left the ring (chordctl leave): {}", status.error().message());
        }
        io.stop();
    });

    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    bool leaving = false;
    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& error, int signal) {
            if (error) return;
            if (leaving) {
                spdlog::warn("signal {} again: stopping without waiting", signal);
                node.stop();
                io.stop();
                return;
            }
            leaving = true;
            spdlog::info("signal {}: leaving the ring", signal);
            node.leave([&](chordkv::Status status) {
                if (status) {
                    spdlog::info("left the ring; neighbours acknowledged");
                } else {
                    spdlog::warn("left the ring without every acknowledgement: {}",
                                 status.error().message());
                }
                io.stop();
            });
            signals.async_wait(on_signal);
        };
    signals.async_wait(on_signal);
    chordkv::net::run_busy(io, std::chrono::microseconds(settings.busy_poll_us));
    spdlog::info("stopped");
    return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    po::options_description flags("chordd options");
    flags.add_options()                                                      //
        ("help,h", "show this help")                                         //
        ("listen", po::value(&s.listen)->default_value(s.listen),            //
         "HOST:PORT to listen on (UDP and TCP)")                             //
        ("advertise", po::value(&s.advertise),                               //
         "HOST:PORT peers use to reach this node (default: --listen)")       //
        ("data-dir", po::value(&s.data_dir)->default_value(s.data_dir),      //
         "directory for the RocksDB store and the node's ids")               //
        ("vnodes", po::value(&s.vnodes)->default_value(s.vnodes),            //
         "virtual nodes (ring positions) this process owns")                 //
        ("join", po::value(&s.join),                                         //
         "HOST:PORT[,HOST:PORT...] seeds to join through (none: new ring)")  //
        ("vnode-placement", po::value(&s.vnode_placement)->default_value(s.vnode_placement),
         "where a new data dir joining a ring puts its vnodes: balanced (takes its share from "
         "the processes holding the most; add processes one at a time) or hashed "
         "(SHA-1 of ADVERTISE#i)")  //
        ("replicas", po::value(&s.replicas)->default_value(s.replicas),
         "copies of every key (owner + next distinct processes)")  //
        ("write-acks", po::value(&s.write_acks)->default_value(s.write_acks),
         "copies that must acknowledge a write before the client is answered")  //
        ("successors", po::value(&s.successors)->default_value(s.successors),
         "successor list length r")  //
        ("join-timeout", po::value(&s.join_timeout_ms)->default_value(s.join_timeout_ms),
         "milliseconds to keep trying the seeds")  //
        ("tombstone-grace", po::value(&s.tombstone_grace_ms)->default_value(s.tombstone_grace_ms),
         "milliseconds a delete's tombstone is kept before it is purged")  //
        ("purge-interval", po::value(&s.purge_interval_ms)->default_value(s.purge_interval_ms),
         "milliseconds between tombstone purges")  //
        ("handoff-timeout", po::value(&s.handoff_timeout_ms)->default_value(s.handoff_timeout_ms),
         "milliseconds a graceful leave may spend handing its keys over")  //
        ("repair-interval", po::value(&s.repair_interval_ms)->default_value(s.repair_interval_ms),
         "milliseconds between replica maintenance rounds (one vnode's arc each)")  //
        ("repair-full-interval",
         po::value(&s.repair_full_interval_ms)->default_value(s.repair_full_interval_ms),
         "milliseconds after which an arc whose writes since its last round all reached their "
         "replicas is compared with its holders again (and copies this process no longer "
         "holds are looked for)")  //
        ("cache-mb", po::value(&s.cache_mb)->default_value(s.cache_mb),
         "MiB of recently used records cached in front of RocksDB, for gets and replica "
         "writes (0 = off)")  //
        ("write-buffer-mb", po::value(&s.write_buffer_mb)->default_value(s.write_buffer_mb),
         "MiB of writes RocksDB keeps in its memtable before it flushes them to a table file "
         "(1..4096); also bounds the write-ahead log replayed after a crash")  //
        ("sync-writes", po::bool_switch(&s.sync_writes),
         "fsync the write-ahead log before a write is acknowledged (puts of one io turn share "
         "one fsync); without it a write survives a crash of the process, not of the host")  //
        ("busy-poll-us", po::value(&s.busy_poll_us)->default_value(s.busy_poll_us),
         "microseconds the io thread keeps polling after its work before it sleeps: lower "
         "latency for a core it keeps busy (0 = never polls)")  //
        ("cluster-key-file", po::value(&s.cluster_key_file),
         "file holding the cluster key; every frame is authenticated with it")  //
        ("log-level", po::value(&s.log_level)->default_value(s.log_level),      //
         "trace, debug, info, warn, error or off")                              //
        ("config", po::value(&s.config),
         "config file of `name = value` lines using the flag names");

    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, flags), vm);
        if (vm.count("config")) {
            const std::string path = vm["config"].as<std::string>();
            std::ifstream file(path);
            if (!file) {
                std::cerr << "chordd: cannot read config file '" << path << "'\n";
                return kExitUsage;
            }
            po::store(po::parse_config_file(file, flags), vm);
        }
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "chordd: " << e.what() << "\n" << flags;
        return kExitUsage;
    }
    if (vm.count("help")) {
        std::cout << flags;
        return EXIT_SUCCESS;
    }
    const auto level = spdlog::level::from_str(s.log_level);
    if (level == spdlog::level::off && s.log_level != "off") {
        std::cerr << "chordd: unknown --log-level '" << s.log_level << "'\n";
        return kExitUsage;
    }
    spdlog::set_level(level);
    return run(s);
}
