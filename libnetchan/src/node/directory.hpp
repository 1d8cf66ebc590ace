#pragma once

// The directory: the actor a node publishes on its TLS port, and the one
// place that turns "host:port/name" into a channel actor. Other nodes ask it
// for a channel by name; local handles (opened, or received inside values)
// ask it to resolve addresses, local or remote. It keeps one connection per
// remote node and forgets a node when its proxy goes down, so a restarted
// node is dialled afresh.

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include "netchan/link_event.hpp"
#include "wire/protocol.hpp" // the directory's messages

namespace netchan::detail {

/// Where a node's link events go: its log, and the watchers a program set
/// (node::watch_links). Shared by the node's directory, channels and
/// endpoints.
class link_log {
public:
  void watch(link_watcher w);
  void report(const link_event& ev);

private:
  std::mutex mtx_;
  std::vector<link_watcher> watchers_;
};

using link_log_ptr = std::shared_ptr<link_log>;

/// What the directory needs to know to reach other nodes, and what its
/// channels need to know about broken links.
struct directory_spec {
  std::string node_name;
  caf::timespan connect_timeout;
  caf::timespan request_timeout;
  caf::timespan resume_timeout{0};
  link_log_ptr links;
};

/// Spawns the directory of a node. On exit it stops every channel it hosts,
/// so that their users learn `peer_down`.
caf::actor spawn_directory(caf::actor_system& sys, directory_spec spec);

/// Splits "host:port/name"; fails with `errc::invalid_argument`.
struct channel_address {
  std::string host;
  uint16_t port = 0;
  std::string name;

  std::string node() const {
    return host + ":" + std::to_string(port);
  }
};

caf::expected<channel_address> parse_channel_address(const std::string& where);

/// Parses "host:port" (IPv6 hosts in brackets).
caf::expected<channel_address> parse_host_port(const std::string& text);

bool is_loopback(const std::string& host);

/// Turns CAF's connection errors from resolving a channel on `node` into
/// netchan errors whose sentence says what to fix; `diagnose` names the
/// cause of a failed TLS handshake (it may take a moment: it handshakes).
caf::error explain_resolve_error(caf::error err, const std::string& node,
                                 const std::function<std::string()>& diagnose);

/// The node of an actor system, for handles that cross process boundaries:
/// an outgoing handle is published under this address, an incoming one is
/// resolved through this directory.
struct local_node {
  caf::actor directory;
  std::string address; ///< "host:port"; empty if the node does not listen
  caf::timespan resolve_timeout;
  /// Broken links: how long to wait for them, how to redial, where to tell.
  caf::timespan resume_timeout{0};
  caf::timespan reconnect_initial{0};
  caf::timespan reconnect_max{0};
  link_log_ptr links;
};

void register_local_node(caf::actor_system& sys, local_node info);
void unregister_local_node(caf::actor_system& sys);
std::optional<local_node> find_local_node(caf::actor_system& sys);

} // namespace netchan::detail
