// Child processes for integration tests: real chordd / chordctl binaries, started with
// posix_spawn, output to a log file, stopped only by their own PID.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace chordkv::testing {

class ChildProcess {
public:
    // Starts `argv[0]` with `argv`, stdout and stderr appended to `log_path`.
    ChildProcess(const std::vector<std::string>& argv, const std::string& log_path);
    ~ChildProcess();  // SIGKILL if still running, then reaps
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    pid_t pid() const noexcept { return pid_; }
    bool running();
    void signal(int sig);
    // Waits for the exit; returns the exit status (or 128 + signal), nullopt on timeout.
    std::optional<int> wait(std::chrono::milliseconds timeout);
    const std::string& log_path() const noexcept { return log_path_; }
    std::string log() const;

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
    std::string log_path_;
};

// Runs a command to completion (bounded by `timeout`), capturing stdout. Returns the exit code
// (or -1 on timeout, after killing it).
struct CommandResult {
    int exit_code = -1;
    std::string out;
};
CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

// Polls `condition` every `interval` until it holds or `timeout` passes; true when it held.
bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
              std::chrono::milliseconds interval = std::chrono::milliseconds(100));

// A TCP and UDP port on 127.0.0.1 that is free right now.
int free_port();

// A fresh directory under the system temp dir, "chordkv-<prefix>-<pid>-<random>", removed with
// everything in it when the TempDir is destroyed.
struct TempDir {
    explicit TempDir(const std::string& prefix);
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return path + "/" + name; }
    std::string path;
};

}  // namespace chordkv::testing
