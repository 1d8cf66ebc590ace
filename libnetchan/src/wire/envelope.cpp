#include "netchan/envelope.hpp"

#include <caf/uniform_type_info_map.hpp>

namespace netchan {

std::string portable_type_name(caf::actor_system& sys, uint16_t type_nr,
                               const std::type_info& type) {
  auto& name = sys.types().portable_name(type_nr, &type);
  if (name.empty() || name == "???")
    return std::string{"unregistered:"} + type.name();
  return name;
}

} // namespace netchan
