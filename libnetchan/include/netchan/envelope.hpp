#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/deserializer.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include "netchan/errc.hpp"

namespace netchan {

/// A value on its way through a channel: the element's type name, who sent
/// it, its place in that sender's order, and the value serialized at the edge.
/// Channel actors only ever see envelopes, so they never need `T` and the
/// type check is netchan's, not CAF's.
struct envelope {
  /// Portable name of the element type, as registered with CAF.
  std::string type_name;
  /// Identifies the sending endpoint (unique per endpoint, random).
  uint64_t sender = 0;
  /// Position in the sender's order, starting at 1.
  uint64_t seq = 0;
  /// Set when the value is handed out again after a receiver failed to
  /// acknowledge it: it may have been seen before.
  bool redelivered = false;
  /// Set by the owner when it hands the value out: the lease to acknowledge.
  uint64_t lease = 0;
  /// `T` serialized with CAF's binary serializer.
  std::vector<char> payload;
};

/// Reads an envelope's payload without trusting its length prefix: CAF 0.17
/// sizes a byte vector to the prefix before reading it, so a few bytes
/// claiming 4 GiB would make a node allocate (and zero) 4 GiB. @private
caf::error load_payload(caf::deserializer& source, std::vector<char>& out);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope& x) {
  auto name = caf::meta::type_name("netchan::envelope");
  if constexpr (std::is_base_of<caf::deserializer, Inspector>::value) {
    if (auto err = f(name, x.type_name, x.sender, x.seq, x.redelivered,
                     x.lease))
      return err;
    return load_payload(f, x.payload);
  } else {
    return f(name, x.type_name, x.sender, x.seq, x.redelivered, x.lease,
             x.payload);
  }
}

/// @private
std::string portable_type_name(caf::actor_system& sys, uint16_t type_nr,
                               const std::type_info& type);

/// The name netchan uses for `T` on the wire: CAF's portable name (builtin
/// types have one; user types get theirs from `add_message_type<T>(name)`).
template <class T>
std::string element_type_name(caf::actor_system& sys) {
  return portable_type_name(sys, caf::type_nr<T>::value, typeid(T));
}

/// Serializes `value` into the payload bytes of an envelope.
template <class T>
caf::error encode(caf::actor_system& sys, const T& value,
                  std::vector<char>& out) {
  out.clear();
  caf::binary_serializer sink{sys, out};
  return sink(const_cast<T&>(value));
}

/// Decodes payload bytes into a `T`; fails with `errc::malformed_value`
/// unless the bytes hold exactly one `T`.
template <class T>
caf::expected<T> decode(caf::actor_system& sys, const std::vector<char>& in) {
  T value{};
  caf::binary_deserializer source{sys, in};
  if (auto err = source(value))
    return make_error(errc::malformed_value,
                      "the value's bytes do not decode as "
                        + element_type_name<T>(sys) + ": "
                        + netchan::to_string(err));
  if (source.remaining() != 0)
    return make_error(errc::malformed_value,
                      "the value's bytes hold more than one "
                        + element_type_name<T>(sys));
  return value;
}

} // namespace netchan
