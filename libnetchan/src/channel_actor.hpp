#pragma once

#include <cstdint>
#include <string>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "netchan/config.hpp"

namespace netchan::detail {

/// What a channel is: its name, element type and capacity, and the largest
/// value it accepts.
struct channel_spec {
  std::string name;
  std::string type_name;
  size_t capacity = 1;
  size_t max_message_size = default_max_message_size;
};

/// Spawns the actor that owns one channel. It must be stopped with an exit
/// message (its parked requests keep it alive otherwise); on exit it answers
/// every waiting party.
caf::actor spawn_channel(caf::actor_system& sys, channel_spec spec);

} // namespace netchan::detail
