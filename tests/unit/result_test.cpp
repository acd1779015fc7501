#include "chord/result.hpp"

#include <gtest/gtest.h>

#include <memory>

namespace chordkv {
namespace {

TEST(ResultTest, ValueAndError) {
    Result<int> good = 7;
    ASSERT_TRUE(good);
    EXPECT_EQ(*good, 7);
    EXPECT_FALSE(good.code());

    Result<int> bad(Errc::not_found, "key 'x'");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.code(), Errc::not_found);
    EXPECT_EQ(bad.error().message(), "not found: key 'x'");
    EXPECT_EQ(bad.code().category().name(), std::string("chordkv"));
}

TEST(ResultTest, MoveOnlyValues) {
    Result<std::unique_ptr<int>> r = std::make_unique<int>(3);
    ASSERT_TRUE(r);
    std::unique_ptr<int> p = std::move(r).value();
    EXPECT_EQ(*p, 3);
}

TEST(ResultTest, StatusAndForeignCodes) {
    Status ok;
    EXPECT_TRUE(ok);
    Status failed(Error(std::make_error_code(std::errc::address_in_use), "0.0.0.0:7400"));
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.code(), std::errc::address_in_use);
    EXPECT_NE(failed.error().message().find("0.0.0.0:7400"), std::string::npos);
    EXPECT_EQ(make_error_code(Errc::timed_out).message(), "timed out");
}

}  // namespace
}  // namespace chordkv
