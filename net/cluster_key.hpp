// The cluster key: a secret shared by every process of a cluster, read from a file. Every
// frame is tagged with HMAC-SHA256 under it (net/codec.hpp).
#pragma once

#include <string>

#include "chord/result.hpp"

namespace chordkv::net {

// Shortest key accepted: 16 bytes (128 bits).
inline constexpr std::size_t kClusterKeyBytesMin = 16;
// Longest key file read.
inline constexpr std::size_t kClusterKeyBytesMax = 4096;

// The key is the file's bytes, with one trailing newline removed (so `openssl rand -hex 32 >
// key` works). Errors: invalid_argument naming the file when it cannot be read, is shorter
// than kClusterKeyBytesMin or longer than kClusterKeyBytesMax.
Result<std::string> read_cluster_key_file(const std::string& path);

}  // namespace chordkv::net
