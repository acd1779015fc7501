#include "tools/bulk.hpp"

#include <cerrno>
#include <cstring>
#include <system_error>

namespace chordkv::tools {
namespace {

// Input is read in chunks of this size; a line is copied out of the chunk only when it
// straddles two of them.
constexpr std::size_t kReadChunkBytes = std::size_t{64} << 10;

constexpr char kHexDigits[] = "0123456789abcdef";

bool needs_hex_escape(unsigned char c) {
    return c < 0x20 || c >= 0x7f;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// How a byte is shown in a message: printable ASCII as itself, anything else as \xHH.
std::string shown(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (!needs_hex_escape(u)) return std::string(1, c);
    return std::string("\\x") + kHexDigits[u >> 4] + kHexDigits[u & 0xf];
}

// "<field>: <why> at column <n>[ (<hint>)]"
Error bad(std::string_view field_name, std::size_t column, const std::string& why,
          std::string_view hint = {}) {
    std::string detail =
        std::string(field_name) + ": " + why + " at column " + std::to_string(column);
    if (!hint.empty()) detail += " (" + std::string(hint) + ")";
    return Error(Errc::invalid_argument, std::move(detail));
}

}  // namespace

void append_escaped(std::string& out, std::string_view bytes) {
    for (char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (needs_hex_escape(u)) {
                    out += "\\x";
                    out.push_back(kHexDigits[u >> 4]);
                    out.push_back(kHexDigits[u & 0xf]);
                } else {
                    out.push_back(c);
                }
        }
    }
}

std::string escape_field(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    append_escaped(out, bytes);
    return out;
}

void append_record(std::string& out, std::string_view key, std::string_view value) {
    append_escaped(out, key);
    out.push_back('\t');
    append_escaped(out, value);
    out.push_back('\n');
}

Result<std::string> unescape_field(std::string_view field, std::string_view field_name,
                                   std::size_t column_offset) {
    std::string out;
    out.reserve(field.size());
    for (std::size_t i = 0; i < field.size(); ++i) {
        const char c = field[i];
        const std::size_t column = column_offset + i + 1;
        if (c == '\t') return bad(field_name, column, "unescaped tab", "write \\t");
        if (c == '\r') return bad(field_name, column, "unescaped carriage return", "write \\r");
        if (c != '\\') {
            out.push_back(c);
            continue;
        }
        if (i + 1 == field.size()) return bad(field_name, column, "incomplete escape '\\'");
        const char e = field[++i];
        switch (e) {
            case '\\':
                out.push_back('\\');
                break;
            case 't':
                out.push_back('\t');
                break;
            case 'n':
                out.push_back('\n');
                break;
            case 'r':
                out.push_back('\r');
                break;
            case 'x': {
                const int hi = i + 1 < field.size() ? hex_value(field[i + 1]) : -1;
                const int lo = i + 2 < field.size() ? hex_value(field[i + 2]) : -1;
                if (hi < 0 || lo < 0) {
                    return bad(field_name, column, "'\\x' needs two hex digits");
                }
                out.push_back(static_cast<char>((hi << 4) | lo));
                i += 2;
                break;
            }
            default:
                return bad(field_name, column, "unknown escape '\\" + shown(e) + "'");
        }
    }
    return out;
}

std::size_t line_bytes_max(const RecordLimits& limits) {
    return 4 * (limits.key_bytes_max + limits.value_bytes_max) + 1;
}

Result<BulkRecord> parse_record_line(std::string_view line, const RecordLimits& limits) {
    using R = Result<BulkRecord>;
    const std::size_t tab = line.find('\t');
    if (tab == std::string_view::npos) return R(Errc::invalid_argument, "no tab after the key");
    auto key = unescape_field(line.substr(0, tab), "key", 0);
    if (!key) return R(key.error());
    if (key->empty()) return R(Errc::invalid_argument, "empty key");
    if (key->size() > limits.key_bytes_max) {
        return R(Errc::too_large, "key of " + std::to_string(key->size()) + " bytes (limit " +
                                      std::to_string(limits.key_bytes_max) + ")");
    }
    auto value = unescape_field(line.substr(tab + 1), "value", tab + 1);
    if (!value) return R(value.error());
    if (value->size() > limits.value_bytes_max) {
        return R(Errc::too_large, "value of " + std::to_string(value->size()) + " bytes (limit " +
                                      std::to_string(limits.value_bytes_max) + ")");
    }
    return BulkRecord{std::move(key).value(), std::move(value).value()};
}

LineReader::LineReader(std::FILE* in, std::size_t line_bytes_max)
    : in_(in), line_bytes_max_(line_bytes_max), buffer_(kReadChunkBytes, '\0') {}

bool LineReader::refill() {
    if (eof_ || error_) return false;
    begin_ = 0;
    end_ = std::fread(buffer_.data(), 1, buffer_.size(), in_);
    if (end_ > 0) return true;
    if (std::ferror(in_)) {
        const int e = errno;
        error_ = Error(std::error_code(e, std::generic_category()), std::strerror(e));
    } else {
        eof_ = true;
    }
    return false;
}

Result<std::optional<LineReader::Line>> LineReader::next() {
    using R = Result<std::optional<Line>>;
    line_.clear();
    Line line;
    bool any = false;  // bytes of this line seen (an unterminated last line counts)
    for (;;) {
        if (begin_ == end_ && !refill()) {
            if (error_) return R(*error_);
            if (!any) return std::optional<Line>();
            break;  // the last line, without its LF
        }
        any = true;
        const char* start = buffer_.data() + begin_;
        const auto* lf = static_cast<const char*>(std::memchr(start, '\n', end_ - begin_));
        const std::size_t take = lf ? static_cast<std::size_t>(lf - start) : end_ - begin_;
        if (!line.too_long) {
            if (line_.size() + take > line_bytes_max_) {
                line.too_long = true;
                line_.clear();
                line_.shrink_to_fit();
            } else {
                line_.append(start, take);
            }
        }
        line.raw_bytes += take;
        begin_ += take;
        if (lf) {
            ++begin_;
            ++line.raw_bytes;
            break;
        }
    }
    bytes_read_ += line.raw_bytes;
    line.number = ++line_number_;
    line.text = line_;
    return std::optional<Line>(line);
}

}  // namespace chordkv::tools
