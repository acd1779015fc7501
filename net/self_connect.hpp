// TCP self-connection: a connect to a port of this host on which nothing listens can be
// handed that very port as its local port (when the port lies in the kernel's ephemeral
// range, ip_local_port_range), and the kernel then connects the socket to itself. A peer
// reconnecting to a node that is down can get one. Such a connection must be dropped at once:
// it echoes our own frames back as if they were replies, and it holds the dead node's port,
// so the node cannot be restarted on it ("Address already in use").
#pragma once

#include <boost/asio/ip/tcp.hpp>

namespace chordkv::net {

// True when the connected socket's local and remote endpoints are the same.
inline bool connected_to_itself(const boost::asio::ip::tcp::socket& socket) {
    boost::system::error_code local_error;
    boost::system::error_code remote_error;
    const auto local = socket.local_endpoint(local_error);
    const auto remote = socket.remote_endpoint(remote_error);
    return !local_error && !remote_error && local == remote;
}

}  // namespace chordkv::net
