#pragma once

// The values of one put_batch (a sender's flush) or one get_many answer (a
// receiver's fetch), flat on the wire:
//
//     count | count x (sender, seq, lease, redelivered, size) | bytes
//
// where `bytes` is every payload back to back, one byte sequence. Arrived,
// the batch is one allocation for the headers and one for all the bytes:
// each value's payload is a slice of that block, and the owner keeps those
// slices in its buffer and leases as they are (payload.hpp), where a
// vector of envelopes would cost an allocation and a copy per value on
// each side.

#include <cstdint>
#include <type_traits>
#include <vector>

#include <caf/deserializer.hpp>
#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/serializer.hpp>

#include "netchan/envelope.hpp"

namespace netchan::detail {

struct batch {
  std::vector<envelope> values;
};

caf::error save_batch(caf::serializer& sink, batch& x);
caf::error load_batch(caf::deserializer& source, batch& x);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch& x) {
  if constexpr (std::is_base_of<caf::deserializer, Inspector>::value)
    return load_batch(f, x);
  else if constexpr (std::is_base_of<caf::serializer, Inspector>::value)
    return save_batch(f, x);
  else
    return f(caf::meta::type_name("netchan::batch"), x.values);
}

} // namespace netchan::detail
