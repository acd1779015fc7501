#include "net/cluster_key.hpp"

#include <fstream>
#include <iterator>

namespace chordkv::net {

Result<std::string> read_cluster_key_file(const std::string& path) {
    using R = Result<std::string>;
    std::ifstream file(path, std::ios::binary);
    if (!file) return R(Errc::invalid_argument, "cannot read cluster key file '" + path + "'");
    std::string key;
    key.assign(std::istreambuf_iterator<char>(file), {});
    if (key.size() > kClusterKeyBytesMax) {
        return R(Errc::invalid_argument, "cluster key file '" + path + "' is larger than " +
                                             std::to_string(kClusterKeyBytesMax) + " bytes");
    }
    if (!key.empty() && key.back() == '\n') key.pop_back();
    if (key.size() < kClusterKeyBytesMin) {
        return R(Errc::invalid_argument, "cluster key in '" + path + "' is " +
                                             std::to_string(key.size()) + " bytes; use at least " +
                                             std::to_string(kClusterKeyBytesMin) + " random bytes");
    }
    return key;
}

}  // namespace chordkv::net
