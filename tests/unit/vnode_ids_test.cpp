#include "node/vnode_ids.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "chord/hash_ring.hpp"

namespace chordkv {
namespace {

class VnodeIdsTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("chordkv-vnode-ids-" + std::to_string(std::random_device{}()));
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::unique_ptr<storage::KeyStore> open() {
        auto store = storage::KeyStore::open(dir_.string(), {});
        EXPECT_TRUE(store) << store.error().message();
        return std::move(store).value();
    }
    std::filesystem::path dir_;
};

TEST_F(VnodeIdsTest, CreatedOnceThenKeptAcrossRestartsAndAddressChanges) {
    std::vector<chord::NodeId> first;
    {
        auto store = open();
        auto ids = load_or_create_vnode_ids(*store, "127.0.0.1:7400", 4);
        ASSERT_TRUE(ids) << ids.error().message();
        first = *ids;
        ASSERT_EQ(first.size(), 4u);
        EXPECT_EQ(first[2], chord::HashRing::point_id("127.0.0.1:7400", 2));
    }
    auto store = open();
    // A restart keeps the ids even if the node now advertises another address.
    auto again = load_or_create_vnode_ids(*store, "127.0.0.2:9999", 4);
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, first);
}

// Placed ids (chord/placement.hpp) are stored as they are and come back after a restart;
// load_or_create then keeps them rather than deriving SHA-1 ids.
TEST_F(VnodeIdsTest, StoredIdsComeBackAsStored) {
    const std::vector<chord::NodeId> placed{chord::NodeId::from_uint64(7),
                                            chord::NodeId::from_uint64(1u << 30)};
    {
        auto store = open();
        EXPECT_EQ(load_vnode_ids(*store, 2).code(), Errc::not_found);
        ASSERT_TRUE(store_vnode_ids(*store, "127.0.0.1:7400", placed));
    }
    auto store = open();
    auto loaded = load_vnode_ids(*store, 2);
    ASSERT_TRUE(loaded) << loaded.error().message();
    EXPECT_EQ(*loaded, placed);
    auto kept = load_or_create_vnode_ids(*store, "127.0.0.1:7400", 2);
    ASSERT_TRUE(kept);
    EXPECT_EQ(*kept, placed);
    EXPECT_EQ(load_vnode_ids(*store, 3).code(), Errc::invalid_argument);
}

TEST_F(VnodeIdsTest, MismatchedCountAndCorruptMetadataAreErrors) {
    auto store = open();
    ASSERT_TRUE(load_or_create_vnode_ids(*store, "a:1", 4));
    auto mismatch = load_or_create_vnode_ids(*store, "a:1", 8);
    EXPECT_EQ(mismatch.code(), Errc::invalid_argument);
    EXPECT_EQ(load_or_create_vnode_ids(*store, "a:1", 0).code(), Errc::invalid_argument);
    ASSERT_TRUE(store->put_meta(kMetaVnodeIds, "not twenty bytes"));
    EXPECT_EQ(load_or_create_vnode_ids(*store, "a:1", 4).code(), Errc::corruption);
}

}  // namespace
}  // namespace chordkv
