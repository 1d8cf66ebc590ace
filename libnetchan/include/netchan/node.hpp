#pragma once

// A netchan node: one per actor system. It listens on TLS, hosts named
// channels in a directory, and opens channels hosted by other nodes.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "netchan/channel.hpp"
#include "netchan/detail/node_core.hpp"
#include "netchan/link_event.hpp"

namespace netchan {

/// The netchan node of one actor system. Copies refer to the same node.
/// Destroy every copy (or call `shutdown`) before the actor system.
class node {
public:
  /// Starts the node as the system's `netchan::config` says: checks the
  /// certificates with OpenSSL (refusing to start without them unless
  /// `netchan.insecure`, which also confines the node to loopback); if
  /// `netchan.listen` is set, listens there (port 0 picks a free port);
  /// hosts the channels of `netchan.channels`, and dials `netchan.peers`.
  [[nodiscard]] static caf::expected<node> start(caf::actor_system& sys);

  /// As above, listening on `listen` ("host:port") instead of
  /// `netchan.listen`.
  [[nodiscard]] static caf::expected<node> start(caf::actor_system& sys,
                                                 const std::string& listen);

  /// The port this node listens on; 0 if it does not listen.
  uint16_t port() const noexcept;

  /// `host:port` other nodes open this node's channels at.
  std::string address() const;

  /// Hosts a channel named `name` on this node and returns its handles. Asking
  /// again for the same name, type and capacity returns the same channel.
  template <class T>
  [[nodiscard]] caf::expected<std::pair<sender<T>, receiver<T>>>
  create(const std::string& name, size_t capacity = detail::default_capacity) {
    return typed<T>(detail::create_endpoints(*this, name,
                                             element_type_name<T>(*sys_),
                                             capacity));
  }

  /// Opens the channel at `where` ("host:port/name", this node's own address
  /// included): connects, looks the name up, checks the element type.
  template <class T>
  [[nodiscard]] caf::expected<std::pair<sender<T>, receiver<T>>>
  open(const std::string& where) {
    return typed<T>(
      detail::open_endpoints(*this, where, element_type_name<T>(*sys_)));
  }

  /// Connects to the node at `host_port` (within netchan.connect-timeout)
  /// and returns the names of the channels it hosts. `start` dials every
  /// peer of netchan.peers this way, retrying for netchan.peer-wait.
  [[nodiscard]] caf::expected<std::vector<std::string>>
  dial(const std::string& host_port);

  /// Calls `watcher` for every link event of this node: links it dialled
  /// that break, heal or expire, and sessions of other nodes on the channels
  /// it hosts. Events are also written to stderr.
  void watch_links(link_watcher watcher);

  /// Names of the channels this node hosts.
  std::vector<std::string> channels() const;

  /// Stops listening and closes every channel this node hosts: their remote
  /// users get `errc::peer_down`. Idempotent.
  void shutdown();

private:
  friend struct detail::node_access;

  node(caf::actor_system& sys, std::shared_ptr<detail::node_state> state)
    : sys_(&sys), state_(std::move(state)) {
  }

  template <class T>
  static caf::expected<std::pair<sender<T>, receiver<T>>>
  typed(caf::expected<detail::endpoint_pair>&& eps) {
    if (!eps)
      return std::move(eps.error());
    return std::make_pair(sender<T>{std::move(eps->first)},
                          receiver<T>{std::move(eps->second)});
  }

  caf::actor_system* sys_;
  std::shared_ptr<detail::node_state> state_;
};

} // namespace netchan
