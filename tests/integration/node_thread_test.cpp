// chordkv::Node embedded in a program through NodeThread: real sockets, real RocksDB, in one
// process.
#include "node/node_thread.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "process.hpp"

namespace chordkv {
namespace {

using namespace std::chrono_literals;

class NodeThreadTest : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = std::filesystem::temp_directory_path() /
                ("chordkv-nodethread-" + std::to_string(std::random_device{}()));
    }
    void TearDown() override { std::filesystem::remove_all(root_); }
    NodeOptions options(const std::string& name) {
        NodeOptions o;
        o.listen = "127.0.0.1:0";
        o.data_dir = (root_ / name).string();
        o.vnodes = 4;
        o.join_timeout = 10s;
        return o;
    }
    std::filesystem::path root_;
};

bool all_members(NodeThread& n) {
    return n.call([](Node& node) {
        for (const auto& v : node.info().vnodes) {
            if (v.state != static_cast<std::uint8_t>(chord::MemberState::member)) return false;
        }
        return true;
    });
}

TEST_F(NodeThreadTest, TwoEmbeddedNodesFormOneRingAndLeave) {
    auto first = NodeThread::start(options("a"));
    ASSERT_TRUE(first) << first.error().message();
    auto second_options = options("b");
    second_options.join = {"127.0.0.1:" + std::to_string((*first)->port())};
    auto second = NodeThread::start(second_options);
    ASSERT_TRUE(second) << second.error().message();
    EXPECT_TRUE(all_members(**first));
    EXPECT_TRUE(all_members(**second));

    // Every vnode of the first node has the 7 others as its successor list, in ring order.
    std::vector<chord::NodeId> all = (*first)->vnode_ids();
    all.insert(all.end(), (*second)->vnode_ids().begin(), (*second)->vnode_ids().end());
    std::sort(all.begin(), all.end());
    const bool ideal = testing::wait_for(
        [&] {
            const auto info = (*first)->call([](Node& node) { return node.info(); });
            for (const auto& v : info.vnodes) {
                const auto at = std::find(all.begin(), all.end(), v.id) - all.begin();
                if (v.successors.size() != all.size() - 1) return false;
                for (std::size_t j = 0; j < v.successors.size(); ++j) {
                    if (v.successors[j].id != all[(at + 1 + j) % all.size()]) return false;
                }
            }
            return true;
        },
        10s);
    EXPECT_TRUE(ideal);

    // A lookup through the embedded API finds successor(SHA-1(key)).
    const auto kid = chord::NodeId::hash("embedded");
    const auto at = std::lower_bound(all.begin(), all.end(), kid);
    const chord::NodeId owner = at == all.end() ? all.front() : *at;
    std::promise<Result<chord::LookupResult>> found;
    (*second)->call([&](Node& node) {
        node.lookup("embedded", [&](chord::Time, Result<chord::LookupResult> r) {
            found.set_value(std::move(r));
        });
        return 0;
    });
    auto result = found.get_future().get();
    ASSERT_TRUE(result) << result.error().message();
    EXPECT_EQ(result->owner.id, owner);

    EXPECT_TRUE((*second)->leave());
    (*first)->stop();
}

TEST_F(NodeThreadTest, UnreachableSeedIsAnError) {
    auto o = options("c");
    o.join = {"127.0.0.1:" + std::to_string(testing::free_port())};
    o.join_timeout = 1500ms;
    auto node = NodeThread::start(o);
    ASSERT_FALSE(node);
    EXPECT_NE(node.error().message().find("join through"), std::string::npos)
        << node.error().message();
}

}  // namespace
}  // namespace chordkv
