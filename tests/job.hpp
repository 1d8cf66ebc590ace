#pragma once

// A user type for tests that cross processes: a string and raw bytes, the
// shapes most likely to expose a serialization gap.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/meta/type_name.hpp>

#include "netchan/channel.hpp"

namespace test {

struct job {
  std::string name;
  std::vector<uint8_t> data;
  int64_t id = 0;

  friend bool operator==(const job& x, const job& y) {
    return x.name == y.name && x.data == y.data && x.id == y.id;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job& x) {
  return f(caf::meta::type_name("test::job"), x.name, x.data, x.id);
}

/// Registers the test types, including channel handles that travel inside
/// values.
inline void add_test_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<job>("test::job");
  cfg.add_message_type<netchan::sender<int32_t>>("netchan::sender<@i32>");
}

} // namespace test
