#include "chord/errors.hpp"

namespace chordkv {
namespace {

class Category final : public std::error_category {
public:
    const char* name() const noexcept override { return "chordkv"; }

    std::string message(int value) const override {
        switch (static_cast<Errc>(value)) {
            case Errc::ok:
                return "success";
            case Errc::invalid_argument:
                return "invalid argument";
            case Errc::not_found:
                return "not found";
            case Errc::already_exists:
                return "already exists";
            case Errc::empty_ring:
                return "the ring has no nodes";
            case Errc::timed_out:
                return "timed out";
            case Errc::not_responsible:
                return "this node is not responsible for the key";
            case Errc::malformed_message:
                return "malformed message";
            case Errc::too_large:
                return "too large";
            case Errc::storage_error:
                return "storage error";
            case Errc::corruption:
                return "stored data is corrupt";
            case Errc::busy:
                return "busy: a limit is reached";
            case Errc::shutting_down:
                return "shutting down";
            case Errc::unreachable:
                return "unreachable";
            case Errc::unauthenticated:
                return "unauthenticated";
            case Errc::hops_exceeded:
                return "lookup exceeded its hop bound";
        }
        return "unknown chordkv error " + std::to_string(value);
    }
};

}  // namespace

const std::error_category& error_category() noexcept {
    static const Category category;
    return category;
}

}  // namespace chordkv
