// KeyOracle: what the chaos test's clients know about every key they wrote, to judge each read
// and the final state (tests/chaos/chaos.cpp).
//
// Every key has one writer (a workload thread owns a subset of the keys), so a key's history
// is a sequence. A write either was acknowledged — it is now the key's latest value (or
// deletion), and every write before it is superseded — or failed (error, timeout): it may or
// may not have been applied, now or later. So at any moment a key may read back as
//
//     acked  |  maybe[0]  |  maybe[1]  | ...       (the writes that failed after `acked`)
//
// and anything else is a stale read (or, at the end, a lost write). Before any acknowledged
// write, `acked` is "not found". Values are unique per write, so equal text means the same
// write.
//
// Threading: calls for one key come from one thread at a time; different keys may be used
// from different threads at once (each key's state is its own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace chordkv::chaos {

// A key's value as a client sees it: nullopt = not found (never written, or deleted).
using Observed = std::optional<std::string>;

// "not found" or the value, quoted and shortened, for reports.
std::string describe(const Observed& value);

struct KeyEvent {
    double at_s = 0;   // seconds since the run started
    std::string what;  // "put 'v..' ok v=..", "del failed: ..", "get 'v..' v=.."
};

struct KeyHistory {
    Observed acked;                   // latest acknowledged write (nullopt: deleted or none)
    std::uint64_t acked_version = 0;  // its version, 0 before the first
    bool ever_acked = false;          // an acknowledged write exists
    std::vector<Observed> maybe;      // writes that failed after `acked`, oldest first
    std::uint64_t writes = 0;         // attempted writes, acknowledged or not
    std::deque<KeyEvent> events;      // the last few operations, for diagnosis
    // Every acknowledged write with the version it was acknowledged with: a read that returns
    // one of these values with another version saw the same write applied a second time.
    std::vector<std::pair<Observed, std::uint64_t>> acked_writes;
};

class KeyOracle {
public:
    // `keys` keys, numbered 0..keys-1; `events_max` operations kept per key for reports.
    explicit KeyOracle(std::size_t keys, std::size_t events_max = 12);

    std::size_t size() const noexcept { return keys_.size(); }

    // A write of `value` (nullopt: a delete) was acknowledged with `version`.
    void on_write_acked(std::size_t key, const Observed& value, std::uint64_t version, double at_s);
    // A write of `value` failed with `error`: it may have been applied.
    void on_write_failed(std::size_t key, const Observed& value, const std::string& error,
                         double at_s);
    // Whether a read that returned `got` is consistent with the history: the latest
    // acknowledged value, or one of the values whose writes failed after it.
    bool read_allowed(std::size_t key, const Observed& got) const;
    // Records a read (for the key's events) and returns read_allowed().
    bool on_read(std::size_t key, const Observed& got, std::uint64_t version, double at_s);
    // Records a read that failed.
    void on_read_failed(std::size_t key, const std::string& error, double at_s);

    const KeyHistory& history(std::size_t key) const { return keys_[key]; }
    // The version `value` was last acknowledged with, if a write of it was (nullopt: a
    // delete).
    std::optional<std::uint64_t> acked_version(std::size_t key, const Observed& value) const;
    // What a read may return, e.g. "'v3' (or 'v4', not found)".
    std::string expected(std::size_t key) const;
    // The key's recent events, one per line, each prefixed by `indent`.
    std::string events(std::size_t key, const std::string& indent) const;

private:
    void note(std::size_t key, double at_s, std::string what);

    std::size_t events_max_;
    std::vector<KeyHistory> keys_;
};

}  // namespace chordkv::chaos
