// Wire format of the data path's gathered replication (net/data.hpp ReplicateWritesRequest and
// ReplicateWritesReply): frame types, golden payload bytes and round trips.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "net/admin_codec.hpp"
#include "net/codec.hpp"

namespace chordkv::net {
namespace {

std::string to_hex(std::string_view bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out.push_back(kDigits[c >> 4]);
        out.push_back(kDigits[c & 0x0f]);
    }
    return out;
}

// peek_request_key reads the key of a get or put payload in place, and refuses a payload
// shorter than the key it declares.
TEST(DataCodecTest, PeekRequestKeyReadsTheKeyOfGetsAndPuts) {
    const std::string long_key(300, 'k');
    for (const std::string& key : {std::string("alpha"), std::string(), long_key}) {
        SCOPED_TRACE(key.size());
        const std::string get = encode_payload(GetRequest{7, key, true});
        PutRequest put;
        put.request_id = 9;
        put.key = key;
        put.value = "value";
        const std::string put_bytes = encode_payload(put);
        EXPECT_EQ(peek_request_key(get), std::optional<std::string_view>(key));
        EXPECT_EQ(peek_request_key(put_bytes), std::optional<std::string_view>(key));
        // Cut inside the length or the key: nothing.
        for (std::size_t cut : {std::size_t{0}, std::size_t{8}, std::size_t{15}}) {
            EXPECT_EQ(peek_request_key(std::string_view(get).substr(0, cut)), std::nullopt);
        }
        if (!key.empty()) {
            EXPECT_EQ(peek_request_key(std::string_view(get).substr(0, 16 + key.size() - 1)),
                      std::nullopt);
        }
    }
    // A declared length near 2^64 must not wrap around the bound check.
    std::string huge(24, '\0');
    for (std::size_t i = 8; i < 16; ++i) huge[i] = '\xff';
    EXPECT_EQ(peek_request_key(huge), std::nullopt);
}

ReplicateWritesRequest sample_request() {
    ReplicateWritesRequest r;
    r.request_id = 7;
    r.entries.push_back(SyncEntry{"k", WireRecord{5, false, "v"}});
    r.entries.push_back(SyncEntry{"gone", WireRecord{0x0102030405060708ull, true, ""}});
    return r;
}

TEST(DataCodecTest, ReplicateWritesFrameTypesAreFixed) {
    EXPECT_EQ(admin_type<ReplicateWritesRequest>(), 57);
    EXPECT_EQ(admin_type<ReplicateWritesReply>(), 58);
}

TEST(DataCodecTest, ReplicateWritesRequestGoldenBytes) {
    const std::string expected =
        "0700000000000000"          // request_id
        "0200000000000000"          // entries: count
        "00000000"                  //          item version
        "01000000000000006b"        // key "k": length, bytes
        "0500000000000000"          // version
        "00"                        // tombstone
        "010000000000000076"        // value "v"
        "0400000000000000676f6e65"  // key "gone"
        "0807060504030201"          // version
        "01"                        // tombstone
        "0000000000000000";         // value ""
    const std::string payload = encode_payload(sample_request());
    EXPECT_EQ(to_hex(payload), expected) << "actual: " << to_hex(payload);
}

TEST(DataCodecTest, ReplicateWritesReplyGoldenBytes) {
    const std::string payload = encode_payload(ReplicateWritesReply{9, 3});
    EXPECT_EQ(to_hex(payload),
              "0900000000000000"   // request_id
              "0300000000000000")  // applied
        << "actual: " << to_hex(payload);
}

TEST(DataCodecTest, ReplicateWritesRoundTripsThroughAFrame) {
    const std::string key = "cluster-key";
    for (const std::string* k : {static_cast<const std::string*>(nullptr), &key}) {
        const ReplicateWritesRequest sent = sample_request();
        const std::string frame = encode_admin(sent, k);
        auto view = decode_frame(frame, kTcpFrameLimits, k);
        ASSERT_TRUE(view) << view.error().message();
        EXPECT_EQ(view->type, admin_type<ReplicateWritesRequest>());
        auto got = decode_admin<ReplicateWritesRequest>(view->payload);
        ASSERT_TRUE(got) << got.error().message();
        EXPECT_EQ(got->request_id, sent.request_id);
        ASSERT_EQ(got->entries.size(), sent.entries.size());
        for (std::size_t i = 0; i < sent.entries.size(); ++i) {
            EXPECT_EQ(got->entries[i].key, sent.entries[i].key);
            EXPECT_EQ(got->entries[i].record.version, sent.entries[i].record.version);
            EXPECT_EQ(got->entries[i].record.tombstone, sent.entries[i].record.tombstone);
            EXPECT_EQ(got->entries[i].record.value, sent.entries[i].record.value);
        }
        auto reply = decode_admin<ReplicateWritesReply>(
            encode_payload(ReplicateWritesReply{sent.request_id, 2}));
        ASSERT_TRUE(reply);
        EXPECT_EQ(reply->request_id, sent.request_id);
        EXPECT_EQ(reply->applied, 2u);
    }
}

TEST(DataCodecTest, ReplicateWritesRequestRejectsTruncationAndTrailingBytes) {
    const std::string payload = encode_payload(sample_request());
    for (std::size_t n = 0; n < payload.size(); ++n) {
        EXPECT_FALSE(decode_admin<ReplicateWritesRequest>(payload.substr(0, n))) << n;
    }
    EXPECT_FALSE(decode_admin<ReplicateWritesRequest>(payload + "x"));
    // An entry count beyond the bytes present is refused before allocating for it.
    std::string huge = payload;
    huge[8 + 7] = 0x7f;
    EXPECT_FALSE(decode_admin<ReplicateWritesRequest>(huge));
}

}  // namespace
}  // namespace chordkv::net
