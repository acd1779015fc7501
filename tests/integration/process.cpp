#include "process.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace chordkv::testing {
namespace {

pid_t spawn(const std::vector<std::string>& argv, int out_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out_fd, STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + " failed");
    return pid;
}

int decode_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

}  // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::string& log_path)
    : log_path_(log_path) {
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + log_path);
    pid_ = spawn(argv, fd);
    ::close(fd);
}

ChildProcess::~ChildProcess() {
    if (running()) {
        ::kill(pid_, SIGKILL);
        wait(std::chrono::seconds(10));
    }
}

bool ChildProcess::running() {
    if (status_) return false;
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
        status_ = decode_status(status);
        return false;
    }
    return r == 0;
}

void ChildProcess::signal(int sig) {
    if (running()) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (running()) {
        if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return status_;
}

std::string ChildProcess::log() const {
    std::ifstream in(log_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
    char path[] = "/tmp/chordkv-cmd-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    CommandResult result;
    {
        // stdout only: stderr goes to our stderr so failures show up in the test log.
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fd, STDOUT_FILENO);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        pid_t pid = -1;
        if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) {
            posix_spawn_file_actions_destroy(&actions);
            ::close(fd);
            ::unlink(path);
            throw std::runtime_error("posix_spawn " + argv[0] + " failed");
        }
        posix_spawn_file_actions_destroy(&actions);
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        int status = 0;
        for (;;) {
            const pid_t r = ::waitpid(pid, &status, WNOHANG);
            if (r == pid) {
                result.exit_code = decode_status(status);
                break;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                ::kill(pid, SIGKILL);
                ::waitpid(pid, &status, 0);
                result.exit_code = -1;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    ::close(fd);
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    result.out = s.str();
    ::unlink(path);
    return result;
}

bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
              std::chrono::milliseconds interval) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(interval);
    }
}

namespace {

// The kernel's ephemeral range (ip_local_port_range), from which it picks the local port of
// every outgoing connection.
std::pair<int, int> ephemeral_range() {
    std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
    int low = 32768, high = 60999;
    if (!(in >> low >> high)) return {32768, 60999};
    return {low, high};
}

bool can_bind(int type, int port) {
    const int fd = ::socket(AF_INET, type, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

}  // namespace

int free_port() {
    // A port outside the kernel's ephemeral range, so that no outgoing connection can take it
    // while its process is down (a peer reconnecting to a dead node's port can even be handed
    // that very port and connect to itself), and a restart can bind it again. The ports above
    // 10000 and below the range (or above it) are searched from a point that differs between
    // test processes; a port must bind for TCP and UDP, and none is handed out twice in one
    // test process.
    static std::set<int> given;
    const auto [eph_low, eph_high] = ephemeral_range();
    std::vector<std::pair<int, int>> spans;
    if (eph_low - 1 >= 10000) spans.push_back({10000, eph_low - 1});
    if (eph_high + 1 <= 65535) spans.push_back({eph_high + 1, 65535});
    int total = 0;
    for (const auto& [lo, hi] : spans) total += hi - lo + 1;
    if (total == 0) throw std::runtime_error("no port outside the ephemeral range");
    static std::mt19937 rng(static_cast<unsigned>(::getpid()) ^
                            static_cast<unsigned>(std::random_device{}()));
    int index = static_cast<int>(rng() % static_cast<unsigned>(total));
    for (int attempt = 0; attempt < 1000;
         ++attempt, index = (index + 1 + static_cast<int>(rng() % 64)) % total) {
        int port = index;
        for (const auto& [lo, hi] : spans) {
            if (port <= hi - lo) {
                port += lo;
                break;
            }
            port -= hi - lo + 1;
        }
        if (given.count(port) != 0) continue;
        if (can_bind(SOCK_STREAM, port) && can_bind(SOCK_DGRAM, port)) {
            given.insert(port);
            return port;
        }
    }
    throw std::runtime_error("no free port");
}

TempDir::TempDir(const std::string& prefix) {
    path = (std::filesystem::temp_directory_path() /
            ("chordkv-" + prefix + "-" + std::to_string(::getpid()) + "-" +
             std::to_string(std::random_device{}())))
               .string();
    std::filesystem::create_directories(path);
}

TempDir::~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
}

}  // namespace chordkv::testing
