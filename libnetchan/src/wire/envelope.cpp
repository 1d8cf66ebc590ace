#include "netchan/envelope.hpp"

#include <algorithm>

#include <caf/uniform_type_info_map.hpp>

namespace netchan {

caf::error load_payload(caf::deserializer& source, std::vector<char>& out) {
  size_t size = 0;
  if (auto err = source.begin_sequence(size))
    return err;
  // Grow with the bytes actually read, not with the claim: a lying prefix
  // ends in end_of_stream after at most one chunk past the real input.
  constexpr size_t chunk = 64 * 1024;
  out.clear();
  while (out.size() < size) {
    auto offset = out.size();
    auto n = std::min(chunk, size - offset);
    out.resize(offset + n);
    if (auto err = source.apply_raw(n, out.data() + offset))
      return err;
  }
  return source.end_sequence();
}

std::string portable_type_name(caf::actor_system& sys, uint16_t type_nr,
                               const std::type_info& type) {
  auto& name = sys.types().portable_name(type_nr, &type);
  if (name.empty() || name == "???")
    return std::string{"unregistered:"} + type.name();
  return name;
}

} // namespace netchan
