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
#include "netchan/payload.hpp"

namespace netchan {

/// A value on its way through a channel: who sent it, its place in that
/// sender's order, and the value serialized at the edge. Channel actors only
/// ever see envelopes, so they never need `T`. The element type is checked
/// once per handle, when it opens the channel (the owner's type name against
/// the handle's), not carried with every value; a value whose bytes do not
/// decode as `T` fails at the receiver with `errc::malformed_value`.
struct envelope {
  /// Identifies the sending endpoint (unique per endpoint, random).
  uint64_t sender = 0;
  /// Position in the sender's order, starting at 1.
  uint64_t seq = 0;
  /// Set when the value is handed out again after a receiver failed to
  /// acknowledge it: it may have been seen before.
  bool redelivered = false;
  /// Set by the owner when it hands the value out: the lease to acknowledge.
  uint64_t lease = 0;
  /// `T` serialized with CAF's binary serializer; shared, so that copies of
  /// an envelope cost a reference count.
  payload bytes;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope& x) {
  return f(caf::meta::type_name("netchan::envelope"), x.sender, x.seq,
           x.redelivered, x.lease, x.bytes);
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

/// Serializes `value` into the payload bytes of an envelope: into a buffer
/// of the calling thread, then one exact allocation for the payload.
template <class T>
caf::error encode(caf::actor_system& sys, const T& value, payload& out) {
  thread_local std::vector<char> scratch;
  scratch.clear();
  caf::binary_serializer sink{sys, scratch};
  if (auto err = sink(const_cast<T&>(value)))
    return err;
  out = payload{scratch};
  return caf::none;
}

/// Decodes payload bytes into a `T`; fails with `errc::malformed_value`
/// unless the bytes hold exactly one `T`.
template <class T>
caf::expected<T> decode(caf::actor_system& sys, const payload& in) {
  T value{};
  caf::binary_deserializer source{sys, in.data(), in.size()};
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
