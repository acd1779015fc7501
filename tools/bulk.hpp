// The record format of `chordctl load` and `chordctl dump`: one record per line,
//
//     KEY<TAB>VALUE<LF>
//
// Keys and values are arbitrary bytes, so both fields are escaped:
//
//     byte                          written as
//     backslash (0x5c)              \\ (two backslashes)
//     TAB (0x09)                    \t
//     LF (0x0a)                     \n
//     CR (0x0d)                     \r
//     any other byte < 0x20,        \xHH   (two hex digits; dump writes lowercase, load
//     and 0x7f..0xff                        accepts either case)
//     every other byte              itself
//
// Dump writes exactly this. Load reads it back and is lenient in one way only: a byte that
// dump would escape may also appear literally (so a UTF-8 text file loads as it is), except
// where that would be ambiguous or is almost surely a mistake — the first literal TAB is the
// separator, so a second one in the value is an error, and a literal CR is refused (it is
// what a CRLF file leaves at the end of each line). An empty line is skipped. Unknown
// escapes (`\q`), a lone `\` at the end of a field and `\x` without two hex digits are errors.
//
// Everything here is pure except LineReader, which reads a FILE*. Any thread; one thread per
// LineReader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "chord/result.hpp"

namespace chordkv::tools {

// Appends `bytes`, escaped, to `out`.
void append_escaped(std::string& out, std::string_view bytes);
// `bytes`, escaped.
std::string escape_field(std::string_view bytes);
// Appends one dump line: escaped key, TAB, escaped value, LF.
void append_record(std::string& out, std::string_view key, std::string_view value);

// The bytes of one escaped field. `field_name` ("key" or "value") starts the messages, and
// `column_offset` (the field's 0-based offset in its line) makes the 1-based columns in them
// point into the whole line. Errors (invalid_argument, detail = the reason): an unknown
// escape, an incomplete one, a literal TAB or CR.
Result<std::string> unescape_field(std::string_view field, std::string_view field_name = "field",
                                   std::size_t column_offset = 0);

// What load accepts; the defaults are a node's (storage::KeyStoreOptions) so a line the
// cluster would refuse is reported before it is sent.
struct RecordLimits {
    // Longest key, in bytes after unescaping. Default 64 KiB.
    std::size_t key_bytes_max = std::size_t{64} << 10;
    // Largest value, in bytes after unescaping. Default 16 MiB.
    std::size_t value_bytes_max = std::size_t{16} << 20;
};

// The longest line that can hold a record within `limits`: every byte escaped as \xHH, plus
// the TAB. Anything longer is refused without being kept in memory.
std::size_t line_bytes_max(const RecordLimits& limits);

struct BulkRecord {
    std::string key;
    std::string value;
};

// Parses one line (without its LF). Errors, with the reason as the detail:
// invalid_argument — no TAB, a bad escape, a literal CR or second TAB, an empty key;
// too_large — the key or value over `limits`.
Result<BulkRecord> parse_record_line(std::string_view line, const RecordLimits& limits = {});

// Reads LF-terminated lines from a FILE* through a fixed-size buffer, keeping at most
// `line_bytes_max` bytes of a line: a longer line is consumed to its end and reported as too
// long, never held in memory. The last line may lack its LF. Does not own or close the FILE.
class LineReader {
public:
    struct Line {
        std::uint64_t number = 0;   // 1-based
        std::string_view text;      // without the LF; valid until the next call to next()
        bool too_long = false;      // text is empty then
        std::size_t raw_bytes = 0;  // bytes the line took in the input, LF included
    };

    LineReader(std::FILE* in, std::size_t line_bytes_max);

    // The next line, nullopt at the end of the input. Errors: the errno of a failed read, as a
    // std::generic_category() code; sticky.
    Result<std::optional<Line>> next();
    // Bytes consumed so far.
    std::uint64_t bytes_read() const noexcept { return bytes_read_; }

private:
    // Reads more input into buffer_; false at the end of the input or on an error (error_).
    bool refill();

    std::FILE* in_;
    std::size_t line_bytes_max_;
    std::string buffer_;
    std::size_t begin_ = 0;  // unread bytes are buffer_[begin_, end_)
    std::size_t end_ = 0;
    std::string line_;
    std::uint64_t line_number_ = 0;
    std::uint64_t bytes_read_ = 0;
    bool eof_ = false;
    std::optional<Error> error_;
};

}  // namespace chordkv::tools
