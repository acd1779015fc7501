#include "node/ring_walker.hpp"

#include <string>
#include <utility>

#include "net/admin_codec.hpp"
#include "node/reply.hpp"

namespace chordkv {

bool RingWalker::start(RingWalk walk, Done done) {
    if (walk_) return false;
    walk_.emplace(std::move(walk));
    done_ = std::move(done);
    pump();
    return true;
}

void RingWalker::pump() {
    const std::string* key = pool_.key();
    while (auto address = walk_->next(RingWalk::Clock::now())) {
        pool_.call(
            *address,
            [key](std::uint64_t rid) {
                return net::encode_admin(net::InfoRequest{rid, false}, key);
            },
            [this, alive = std::weak_ptr<int>(alive_),
             address = *address](Result<net::Frame> frame) {
                if (alive.expired() || !walk_) return;
                auto info = frame ? decode_reply<net::InfoReply>(*frame, address)
                                  : Result<net::InfoReply>(frame.error());
                if (info) {
                    walk_->on_reply(address, *info);
                } else {
                    last_failure_ = address + ": " + info.error().message();
                    walk_->on_failure(address);
                }
                pump();
            });
    }
    if (walk_->done(RingWalk::Clock::now())) {
        RingWalk finished = std::move(*walk_);
        walk_.reset();
        if (auto done = std::move(done_)) done(finished);
    }
}

}  // namespace chordkv
