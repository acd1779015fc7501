// The load/dump line format (tools/bulk.hpp): escaping round-trips every byte, parsing
// reports each kind of bad line with a reason, and LineReader keeps memory bounded.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "tools/bulk.hpp"

namespace chordkv::tools {
namespace {

using namespace std::string_literals;

std::string all_bytes() {
    std::string s;
    for (int c = 0; c < 256; ++c) s.push_back(static_cast<char>(c));
    return s;
}

TEST(BulkFormatTest, EscapesAsDocumented) {
    EXPECT_EQ(escape_field("plain text: ~!@#$%^&*()"), "plain text: ~!@#$%^&*()");
    EXPECT_EQ(escape_field("a\\b\tc\nd\re"), "a\\\\b\\tc\\nd\\re");
    EXPECT_EQ(escape_field("\0\x01\x1f\x7f\x80\xff"s), "\\x00\\x01\\x1f\\x7f\\x80\\xff");
    EXPECT_EQ(escape_field(" ~"), " ~");  // 0x20 and 0x7e stand for themselves
    std::string line;
    append_record(line, "k\t1", "v\n1");
    EXPECT_EQ(line, "k\\t1\tv\\n1\n");
}

TEST(BulkFormatTest, EveryByteRoundTrips) {
    const std::string bytes = all_bytes();
    const std::string escaped = escape_field(bytes);
    EXPECT_EQ(escaped.find('\t'), std::string::npos);
    EXPECT_EQ(escaped.find('\n'), std::string::npos);
    EXPECT_EQ(escaped.find('\r'), std::string::npos);
    for (unsigned char c : escaped) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << int(c);
    auto back = unescape_field(escaped);
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(*back, bytes);

    std::mt19937 rng(11);
    for (int round = 0; round < 200; ++round) {
        std::string key(1 + rng() % 40, '\0');
        std::string value(rng() % 100, '\0');
        for (auto& c : key) c = static_cast<char>(rng());
        for (auto& c : value) c = static_cast<char>(rng());
        std::string line;
        append_record(line, key, value);
        ASSERT_EQ(line.back(), '\n');
        line.pop_back();
        auto record = parse_record_line(line);
        ASSERT_TRUE(record) << record.error().message();
        EXPECT_EQ(record->key, key);
        EXPECT_EQ(record->value, value);
    }
}

TEST(BulkFormatTest, AcceptsLiteralBytesAndEitherHexCase) {
    auto record = parse_record_line("caf\xc3\xa9\tnul\\x00 and \\xFF\\xfe and \x01");
    ASSERT_TRUE(record) << record.error().message();
    EXPECT_EQ(record->key, "caf\xc3\xa9");
    EXPECT_EQ(record->value, "nul\0 and \xff\xfe and \x01"s);
    auto empty_value = parse_record_line("k\t");
    ASSERT_TRUE(empty_value);
    EXPECT_EQ(empty_value->value, "");
}

TEST(BulkFormatTest, RejectsMalformedLinesWithAReason) {
    struct Case {
        std::string line;
        Errc code;
        std::string reason;
    };
    const std::vector<Case> cases = {
        {"no separator", Errc::invalid_argument, "no tab"},
        {"\tvalue", Errc::invalid_argument, "empty key"},
        {"k\\q\tv", Errc::invalid_argument, "key: unknown escape '\\q' at column 2"},
        {"k\tv\\", Errc::invalid_argument, "value: incomplete escape"},
        {"k\tv\\x4", Errc::invalid_argument, "value: '\\x' needs two hex digits at column 4"},
        {"k\tv\\xg0", Errc::invalid_argument, "two hex digits"},
        {"k\tv\tw", Errc::invalid_argument, "value: unescaped tab at column 4"},
        {"k\tv\r", Errc::invalid_argument, "unescaped carriage return"},
        {"k\r\tv", Errc::invalid_argument, "key: unescaped carriage return"},
    };
    for (const auto& c : cases) {
        auto record = parse_record_line(c.line);
        ASSERT_FALSE(record) << escape_field(c.line);
        EXPECT_EQ(record.code(), c.code) << escape_field(c.line);
        EXPECT_NE(record.error().detail().find(c.reason), std::string::npos)
            << escape_field(c.line) << ": " << record.error().detail();
    }
}

TEST(BulkFormatTest, EnforcesTheLimitsAfterUnescaping) {
    RecordLimits limits;
    limits.key_bytes_max = 4;
    limits.value_bytes_max = 3;
    EXPECT_TRUE(parse_record_line("\\x00\\x01\\x02\\x03\tabc", limits));
    auto long_key = parse_record_line("abcde\tv", limits);
    ASSERT_FALSE(long_key);
    EXPECT_EQ(long_key.code(), Errc::too_large);
    EXPECT_NE(long_key.error().detail().find("key of 5 bytes (limit 4)"), std::string::npos);
    auto long_value = parse_record_line("k\tabcd", limits);
    ASSERT_FALSE(long_value);
    EXPECT_EQ(long_value.code(), Errc::too_large);
    EXPECT_EQ(line_bytes_max(limits), 4 * (4 + 3) + 1u);
    EXPECT_EQ(line_bytes_max(RecordLimits{}), 4 * ((64u << 10) + (16u << 20)) + 1);
}

// A FILE* over `text` (a temporary file, since fmemopen is not everywhere).
std::FILE* file_with(const std::string& text) {
    std::FILE* f = std::tmpfile();
    if (!f) return nullptr;
    std::fwrite(text.data(), 1, text.size(), f);
    std::rewind(f);
    return f;
}

std::vector<std::string> read_all(LineReader& reader, std::vector<bool>* too_long = nullptr) {
    std::vector<std::string> lines;
    for (;;) {
        auto next = reader.next();
        EXPECT_TRUE(next);
        if (!next || !*next) break;
        EXPECT_EQ((*next)->number, lines.size() + 1);
        lines.emplace_back((*next)->text);
        if (too_long) too_long->push_back((*next)->too_long);
    }
    return lines;
}

TEST(LineReaderTest, SplitsLinesAndKeepsTheLastUnterminatedOne) {
    std::FILE* f = file_with("one\n\nthree\nlast");
    ASSERT_NE(f, nullptr);
    LineReader reader(f, 100);
    EXPECT_EQ(read_all(reader), (std::vector<std::string>{"one", "", "three", "last"}));
    EXPECT_EQ(reader.bytes_read(), 15u);
    std::fclose(f);

    std::FILE* empty = file_with("");
    LineReader none(empty, 100);
    EXPECT_TRUE(read_all(none).empty());
    std::fclose(empty);
}

TEST(LineReaderTest, LinesAcrossChunksAndOverTheLimit) {
    // 64 KiB chunks: a 200,000-byte line straddles several; a 300,000-byte one is too long.
    const std::string big(200'000, 'b');
    const std::string huge(300'000, 'h');
    std::FILE* f = file_with("a\n" + big + "\n" + huge + "\nz\n");
    ASSERT_NE(f, nullptr);
    LineReader reader(f, 250'000);
    std::vector<bool> too_long;
    const auto lines = read_all(reader, &too_long);
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[0], "a");
    EXPECT_EQ(lines[1], big);
    EXPECT_EQ(lines[2], "");
    EXPECT_EQ(lines[3], "z");
    EXPECT_EQ(too_long, (std::vector<bool>{false, false, true, false}));
    EXPECT_EQ(reader.bytes_read(), 2 + big.size() + 1 + huge.size() + 1 + 2);
    std::fclose(f);
}

}  // namespace
}  // namespace chordkv::tools
