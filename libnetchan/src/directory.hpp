#pragma once

// The directory: the actor a node publishes on its TLS port. Other nodes ask
// it for a channel by name; it answers with the channel actor, its element
// type and capacity.

#include <string>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

namespace netchan::detail {

/// (create, name, type_name, capacity, max_message_size) -> channel actor.
/// Local only: the node's own thread registers channels.
using create_atom = caf::atom_constant<caf::atom("nc_create")>;
/// (lookup, name) -> (channel actor, type_name, capacity) | unknown_channel.
using lookup_atom = caf::atom_constant<caf::atom("nc_lookup")>;
/// (list) -> names of the hosted channels, comma-separated.
using list_atom = caf::atom_constant<caf::atom("nc_list")>;

/// Spawns the directory of node `node_name`. On exit it stops every channel
/// it created, so that their users learn `peer_down`.
caf::actor spawn_directory(caf::actor_system& sys, std::string node_name);

} // namespace netchan::detail
