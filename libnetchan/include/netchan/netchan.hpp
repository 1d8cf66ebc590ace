#pragma once

/// netchan: Go channels over the network, on the C++ Actor Framework.
/// Include this header for the whole public API.

#include "netchan/actor_api.hpp"
#include "netchan/channel.hpp"
#include "netchan/config.hpp"
#include "netchan/envelope.hpp"
#include "netchan/errc.hpp"
#include "netchan/stats.hpp"
#include "netchan/node.hpp"
#include "netchan/go.hpp"
#include "netchan/select.hpp"
