#include "net/address.hpp"

#include <gtest/gtest.h>

namespace chordkv::net {
namespace {

TEST(AddressTest, ParsesHostPortForms) {
    auto a = parse_host_port("127.0.0.1:7400");
    ASSERT_TRUE(a) << a.error().message();
    EXPECT_EQ(a->host, "127.0.0.1");
    EXPECT_EQ(a->port, 7400);
    EXPECT_EQ(a->to_string(), "127.0.0.1:7400");

    auto v6 = parse_host_port("[::1]:9000");
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->host, "::1");
    EXPECT_EQ(v6->to_string(), "[::1]:9000");

    auto any_port = parse_host_port("127.0.0.1:0", 0, /*allow_port_zero=*/true);
    ASSERT_TRUE(any_port);
    EXPECT_EQ(any_port->port, 0);

    auto bare = parse_host_port("localhost", 7400);
    ASSERT_TRUE(bare);
    EXPECT_EQ(bare->to_string(), "localhost:7400");
}

TEST(AddressTest, RejectsBadInputWithAClearMessage) {
    for (const char* bad : {"", ":7400", "host:", "host:0", "host:65536", "host:12ab", "::1:80",
                            "[::1", "[::1]x", "ho st:1", "localhost"}) {
        auto r = parse_host_port(bad);
        ASSERT_FALSE(r) << bad;
        EXPECT_EQ(r.code(), Errc::invalid_argument) << bad;
        EXPECT_NE(r.error().message().find("address"), std::string::npos) << bad;
    }
}

}  // namespace
}  // namespace chordkv::net
