#pragma once

// How the rest of the library starts an endpoint actor: one per handle
// family (endpoint.hpp has the actor, flow.hpp what it shares with threads).

#include <string>

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include "endpoint/flow.hpp"

namespace netchan::detail {

/// Spawns the endpoint actor of a handle family on `channel` of `capacity`,
/// whose owner accepts values up to `owner_max` bytes (0: unknown). It stamps
/// sender id and sequence numbers, enforces deadlines by withdrawing, sends
/// on credit and fetches in batches (capacity >= 1), and acknowledges
/// received values.
///
/// `where` ("host:port/name") lets it redial a channel on another node when
/// the link breaks; empty: a broken link is the end.
caf::actor spawn_endpoint(caf::actor_system& sys, caf::actor channel,
                          flow_ptr f, std::string where = {});

/// Spawns an endpoint actor that first resolves `where` through `directory`
/// (within `timeout`), holding operations until it knows the channel, and
/// checks that it carries `type_name`. With no directory, every operation
/// fails with `error`.
caf::actor spawn_resolving_endpoint(caf::actor_system& sys, std::string where,
                                    std::string type_name, flow_ptr f,
                                    caf::actor directory,
                                    caf::timespan timeout, caf::error error);

} // namespace netchan::detail
