// NodeThread: a chordkv::Node on its own io_context and thread, for programs that do not run
// Boost.Asio themselves.
//
//     auto node = chordkv::NodeThread::start(options);   // returns once the node is in the ring
//     if (!node) { log(node.error().message()); return; }
//     ...
//     (*node)->leave();                                   // graceful leave, then the thread ends
//
// Threading: every method may be called from any thread except the node's own (call() from
// inside call() would deadlock). The Node itself is only touched on its thread.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <memory>
#include <thread>
#include <type_traits>

#include "node/node.hpp"

namespace chordkv {

class NodeThread {
public:
    // Opens the node, starts its thread and waits until every vnode is a ring member.
    // Errors: those of Node::open and Node::start (after options.join_timeout).
    static Result<std::unique_ptr<NodeThread>> start(NodeOptions options);
    // Stops the node at once (no leave) if it is still running, and joins the thread.
    ~NodeThread();
    NodeThread(const NodeThread&) = delete;
    NodeThread& operator=(const NodeThread&) = delete;

    // Graceful leave (Node::leave); blocks until it is done and the thread has ended.
    Status leave();
    // Stops at once and joins the thread. Idempotent.
    void stop();

    // Runs `fn(node)` on the node's thread and returns its result. Requires a running node.
    template <typename F>
    auto call(F fn) -> std::invoke_result_t<F, Node&> {
        using T = std::invoke_result_t<F, Node&>;
        std::packaged_task<T()> task([this, &fn] { return fn(*node_); });
        auto result = task.get_future();
        boost::asio::post(io_, [&task] { task(); });
        return result.get();
    }

    std::uint16_t port() const noexcept { return port_; }
    const std::vector<chord::NodeId>& vnode_ids() const noexcept { return ids_; }

private:
    NodeThread() = default;
    void join();

    boost::asio::io_context io_{1};  // one thread runs it (Node's Threading note)
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
        io_.get_executor()};
    std::unique_ptr<Node> node_;
    std::thread thread_;
    std::uint16_t port_ = 0;
    std::vector<chord::NodeId> ids_;
};

}  // namespace chordkv
