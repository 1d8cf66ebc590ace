#pragma once

// What the library's own code may do with a node beyond its public API:
// go/ publishes a listener's hello actor under a hidden name and resolves
// the one of the listener it dials. Not installed.

#include <cstdint>
#include <string>
#include <tuple>

#include <caf/actor.hpp>
#include <caf/expected.hpp>

#include "netchan/node.hpp"

namespace netchan::detail {

/// A channel found by name: its actor, element type, capacity and size
/// limit (the owner's netchan.max-message-size).
using resolved_channel = std::tuple<caf::actor, std::string, uint64_t,
                                    uint64_t>;

struct node_access {
  /// Makes `whom` reachable as "address/id" (id starts with '#', so it is
  /// never listed).
  static void adopt(node& n, const std::string& id, caf::actor whom,
                    const std::string& type_name);

  /// Resolves "host:port/name", this node's own address included.
  static caf::expected<resolved_channel> resolve(node& n,
                                                 const std::string& where);

  static node_state& state(node& n) {
    return *n.state_;
  }
};

} // namespace netchan::detail
