#pragma once

#include <cstdint>
#include <string>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include "netchan/config.hpp"
#include "node/directory.hpp"

namespace netchan::detail {

/// What a channel is: its name, element type and capacity, and the largest
/// value it accepts.
struct channel_spec {
  std::string name;
  std::string type_name;
  size_t capacity = 1;
  size_t max_message_size = default_max_message_size;
  /// How long the state of a party whose link broke is kept for it (its
  /// leases, credit and waiting sends); zero: released at once.
  caf::timespan resume_timeout{0};
  /// Where session events go; may be null.
  link_log_ptr links;
};

/// Spawns the actor that owns one channel. It must be stopped with an exit
/// message (its parked requests keep it alive otherwise); on exit it answers
/// every waiting party.
caf::actor spawn_channel(caf::actor_system& sys, channel_spec spec);

} // namespace netchan::detail
