#include "node/node_thread.hpp"

namespace chordkv {

Result<std::unique_ptr<NodeThread>> NodeThread::start(NodeOptions options) {
    using R = Result<std::unique_ptr<NodeThread>>;
    std::unique_ptr<NodeThread> t(new NodeThread());
    auto opened = Node::open(t->io_, std::move(options));
    if (!opened) return R(opened.error());
    t->node_ = std::move(opened).value();
    t->port_ = t->node_->port();

    std::promise<Status> ready;
    auto ready_future = ready.get_future();
    boost::asio::post(t->io_, [node = t->node_.get(), &ready] {
        node->start([&ready](Status status) { ready.set_value(std::move(status)); });
    });
    t->thread_ = std::thread([io = &t->io_] { io->run(); });
    Status status = ready_future.get();
    if (!status) {
        t->stop();
        return R(status.error());
    }
    // Placed in start() when a new data dir joined; the node's thread no longer changes them.
    t->ids_ = t->node_->vnode_ids();
    return t;
}

NodeThread::~NodeThread() {
    stop();
}

Status NodeThread::leave() {
    if (!thread_.joinable()) return Status(Errc::shutting_down, "the node is stopped");
    std::promise<Status> done;
    auto done_future = done.get_future();
    boost::asio::post(io_, [this, &done] {
        node_->leave([&done](Status status) { done.set_value(std::move(status)); });
    });
    Status status = done_future.get();
    join();
    return status;
}

void NodeThread::stop() {
    if (!thread_.joinable()) return;
    boost::asio::post(io_, [this] { node_->stop(); });
    join();
}

void NodeThread::join() {
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
}

}  // namespace chordkv
