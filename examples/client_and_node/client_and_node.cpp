// client_and_node: embeds a one-process chordkv ring and talks to it with chordkv::Client.
//
//     client_and_node [DATA_DIR]
//
// Starts a chordkv::Node on 127.0.0.1 (a free port) on its own thread (NodeThread), then puts
// a key, reads it back, deletes it and reads it again, checking every answer. The node's
// RocksDB data lives in DATA_DIR, or in a fresh temporary directory that is removed at exit.
// Exit code: 0 when every check passed, 1 when one failed (the message says which), 2 when the
// temporary directory cannot be created.
#include <chordkv/node/client.hpp>
#include <chordkv/node/node_thread.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>

namespace {

using namespace std::chrono_literals;

constexpr std::string_view kKey = "example:greeting";
constexpr std::string_view kValue = "hello from an embedded chordkv node";

int fail(std::string_view what) {
    std::cerr << "client_and_node: FAILED: " << what << "\n";
    return 1;
}

int run(const std::string& data_dir) {
    chordkv::NodeOptions node_options;
    node_options.listen = "127.0.0.1:0";  // any free port
    node_options.data_dir = data_dir;
    node_options.vnodes = 4;
    node_options.join_timeout = 10s;
    auto node = chordkv::NodeThread::start(node_options);  // returns once the ring is formed
    if (!node) return fail("start the node: " + node.error().message());
    const std::string address = "127.0.0.1:" + std::to_string((*node)->port());
    std::cout << "node: started on " << address << " with " << (*node)->vnode_ids().size()
              << " vnodes, data in " << data_dir << "\n";

    chordkv::ClientOptions client_options;
    client_options.seeds = {address};
    client_options.timeout = 5s;
    chordkv::Client client(client_options);

    auto put = client.put(kKey, kValue);
    if (!put) return fail("put: " + put.error().message());
    std::cout << "put " << kKey << " = \"" << kValue << "\": version " << *put << "\n";

    auto got = client.get(kKey);
    if (!got) return fail("get after put: " + got.error().message());
    if (!got->found) return fail("get after put: key not found");
    if (got->value != kValue) return fail("get after put: value \"" + got->value + "\"");
    if (got->version != *put) {
        return fail("get after put: version " + std::to_string(got->version) + ", put stamped " +
                    std::to_string(*put));
    }
    std::cout << "get " << kKey << ": \"" << got->value << "\", version " << got->version << "\n";

    auto deleted = client.del(kKey);
    if (!deleted) return fail("del: " + deleted.error().message());
    if (*deleted <= *put) return fail("del: version " + std::to_string(*deleted) + " not newer");
    std::cout << "del " << kKey << ": version " << *deleted << "\n";

    auto gone = client.get(kKey);
    if (!gone) return fail("get after del: " + gone.error().message());
    if (gone->found) return fail("get after del: still found, value \"" + gone->value + "\"");
    std::cout << "get " << kKey << ": not found\n";

    auto left = (*node)->leave();
    if (!left) return fail("leave: " + left.error().message());
    std::cout << "node: left the ring\n";
    std::cout << "client_and_node: OK\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 2) {
        std::cerr << "usage: client_and_node [DATA_DIR]\n";
        return 2;
    }
    if (argc == 2) return run(argv[1]);

    std::error_code error;
    std::string dir =
        (std::filesystem::temp_directory_path(error) / "chordkv-example-XXXXXX").string();
    if (error || ::mkdtemp(dir.data()) == nullptr) {
        std::cerr << "client_and_node: cannot create a temporary directory in " << dir << "\n";
        return 2;
    }
    const int status = run(dir);  // the node is gone once run() returns
    std::filesystem::remove_all(dir, error);
    return status;
}
