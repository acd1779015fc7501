// chordd: the chordkv daemon.
//
// This first version opens (or creates) the node's data dir, loads or creates its persisted
// vnode ids, reports the ring it forms on its own, and runs until SIGTERM or SIGINT. The
// network transport (and with it --join) arrives with the net layer.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/program_options.hpp>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "chord/node_id.hpp"
#include "net/address.hpp"
#include "node/vnode_ids.hpp"
#include "storage/key_store.hpp"

namespace po = boost::program_options;

namespace {

// Exit codes: 0 clean stop, 2 bad command line or config, 3 data dir problem.
constexpr int kExitUsage = 2;
constexpr int kExitDataDir = 3;

struct Settings {
    std::string listen = "127.0.0.1:7400";
    std::string advertise;  // defaults to listen
    std::string data_dir = "chordkv-data";
    std::uint32_t vnodes = 8;
    std::string log_level = "info";
    std::string config;
};

int run(const Settings& settings) {
    auto listen = chordkv::net::parse_host_port(settings.listen);
    if (!listen) {
        spdlog::error("--listen: {}", listen.error().message());
        return kExitUsage;
    }
    auto advertise = chordkv::net::parse_host_port(settings.advertise.empty() ? settings.listen
                                                                              : settings.advertise);
    if (!advertise) {
        spdlog::error("--advertise: {}", advertise.error().message());
        return kExitUsage;
    }
    if (settings.vnodes == 0 || settings.vnodes > 1024) {
        spdlog::error("--vnodes must be in 1..1024, got {}", settings.vnodes);
        return kExitUsage;
    }

    std::error_code ec;
    std::filesystem::create_directories(settings.data_dir, ec);
    if (ec) {
        spdlog::error("cannot create data dir '{}': {}", settings.data_dir, ec.message());
        return kExitDataDir;
    }
    auto store = chordkv::storage::KeyStore::open(settings.data_dir, {});
    if (!store) {
        spdlog::error("cannot open data dir '{}': {}", settings.data_dir, store.error().message());
        return kExitDataDir;
    }
    auto ids = chordkv::load_or_create_vnode_ids(**store, advertise->to_string(), settings.vnodes);
    if (!ids) {
        spdlog::error("data dir '{}': {}", settings.data_dir, ids.error().message());
        return kExitDataDir;
    }

    auto sorted = *ids;
    std::sort(sorted.begin(), sorted.end());
    spdlog::info("chordd {} with {} vnodes, data in '{}'", advertise->to_string(), sorted.size(),
                 std::filesystem::absolute(settings.data_dir).string());
    for (std::size_t i = 0; i < sorted.size(); ++i) {
        const auto& pred = sorted[(i + sorted.size() - 1) % sorted.size()];
        spdlog::info("  vnode {}  arc ({}.., {}..]  share {:.2f}%", sorted[i].to_hex(),
                     pred.short_hex(), sorted[i].short_hex(),
                     100.0 * chordkv::chord::ring_share(pred, sorted[i]));
    }
    if (auto keys = (*store)->approximate_keys()) {
        spdlog::info("keys stored: about {}", *keys);
    }
    spdlog::info("ready: a ring of one node");

    boost::asio::io_context io;
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& error, int signal) {
        if (!error) spdlog::info("signal {} received, stopping", signal);
        io.stop();
    });
    io.run();
    spdlog::info("stopped");
    return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    po::options_description flags("chordd options");
    flags.add_options()                                                     //
        ("help,h", "show this help")                                        //
        ("listen", po::value(&s.listen)->default_value(s.listen),           //
         "HOST:PORT to listen on (UDP and TCP)")                            //
        ("advertise", po::value(&s.advertise),                              //
         "HOST:PORT peers use to reach this node (default: --listen)")      //
        ("data-dir", po::value(&s.data_dir)->default_value(s.data_dir),     //
         "directory for the RocksDB store and the node's ids")              //
        ("vnodes", po::value(&s.vnodes)->default_value(s.vnodes),           //
         "virtual nodes (ring positions) this process owns")                //
        ("log-level", po::value(&s.log_level)->default_value(s.log_level),  //
         "trace, debug, info, warn, error or off")                          //
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
