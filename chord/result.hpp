// Result<T>: a value or an Error (code + message), for operations that can fail in expected
// ways. Like rocksdb::Status, the code is for programs and the message for people.
//
//   Result<Record> r = store.read(key);
//   if (!r) { log(r.error().message()); return r.error(); }
//   use(*r);
//
// Accessing the value of a failed Result (or the error of a successful one) is a bug and
// asserts.
#pragma once

#include <cassert>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "chord/errors.hpp"

namespace chordkv {

class Error {
public:
    Error(std::error_code code, std::string detail = {})
        : code_(code), detail_(std::move(detail)) {}
    Error(Errc code, std::string detail = {}) : code_(code), detail_(std::move(detail)) {}

    const std::error_code& code() const noexcept { return code_; }
    const std::string& detail() const noexcept { return detail_; }
    // "<code message>: <detail>" or just the code message when there is no detail.
    std::string message() const {
        return detail_.empty() ? code_.message() : code_.message() + ": " + detail_;
    }

    friend bool operator==(const Error& e, Errc c) { return e.code_ == c; }

private:
    std::error_code code_;
    std::string detail_;
};

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}
    Result(Errc code, std::string detail = {})
        : state_(std::in_place_index<1>, Error(code, std::move(detail))) {}
    Result(std::error_code code, std::string detail)
        : state_(std::in_place_index<1>, Error(code, std::move(detail))) {}

    bool ok() const noexcept { return state_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & {
        assert(ok());
        return std::get<0>(state_);
    }
    const T& value() const& {
        assert(ok());
        return std::get<0>(state_);
    }
    T&& value() && {
        assert(ok());
        return std::get<0>(std::move(state_));
    }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const& {
        assert(!ok());
        return std::get<1>(state_);
    }
    // The error code, or a default (success) code when the Result holds a value.
    std::error_code code() const noexcept {
        return ok() ? std::error_code{} : std::get<1>(state_).code();
    }

private:
    std::variant<T, Error> state_;
};

// Result of an operation that returns nothing on success.
template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), failed_(true) {}
    Result(Errc code, std::string detail = {}) : error_(code, std::move(detail)), failed_(true) {}
    Result(std::error_code code, std::string detail)
        : error_(code, std::move(detail)), failed_(true) {}

    bool ok() const noexcept { return !failed_; }
    explicit operator bool() const noexcept { return ok(); }
    const Error& error() const {
        assert(failed_);
        return error_;
    }
    std::error_code code() const noexcept { return failed_ ? error_.code() : std::error_code{}; }

private:
    Error error_{std::error_code{}};
    bool failed_ = false;
};

using Status = Result<void>;

}  // namespace chordkv
