// The flat batch format (wire/batch.hpp): headers, then one byte sequence
// that arrives as one block shared by the values' payloads.

#include "wire/batch.hpp"

#include <algorithm>
#include <limits>

#include <caf/sec.hpp>

namespace netchan::detail {

namespace {

/// Values reserved for before their headers are read: a lying count costs
/// no more than this.
constexpr size_t max_reserve = 4096;

} // namespace

caf::error save_batch(caf::serializer& sink, batch& x) {
  auto count = x.values.size();
  if (auto err = sink.begin_sequence(count))
    return err;
  size_t total = 0;
  for (auto& v : x.values) {
    uint64_t size = v.bytes.size();
    total += size;
    if (auto err = sink(v.sender, v.seq, v.lease, v.redelivered, size))
      return err;
  }
  if (auto err = sink.end_sequence())
    return err;
  if (auto err = sink.begin_sequence(total))
    return err;
  for (auto& v : x.values)
    if (!v.bytes.empty())
      if (auto err = sink.apply_raw(v.bytes.size(),
                                    const_cast<char*>(v.bytes.data())))
        return err;
  return sink.end_sequence();
}

caf::error load_batch(caf::deserializer& source, batch& x) {
  size_t count = 0;
  if (auto err = source.begin_sequence(count))
    return err;
  x.values.clear();
  x.values.reserve(std::min(count, max_reserve));
  std::vector<uint64_t> sizes;
  sizes.reserve(std::min(count, max_reserve));
  uint64_t sum = 0;
  for (size_t i = 0; i < count; ++i) {
    auto& v = x.values.emplace_back();
    uint64_t size = 0;
    if (auto err = source(v.sender, v.seq, v.lease, v.redelivered, size))
      return err;
    if (size > std::numeric_limits<uint64_t>::max() - sum)
      return caf::sec::invalid_argument;
    sum += size;
    sizes.push_back(size);
  }
  if (auto err = source.end_sequence())
    return err;
  size_t total = 0;
  if (auto err = source.begin_sequence(total))
    return err;
  if (total != sum)
    return caf::sec::invalid_argument; // the sizes do not add up
  payload block;
  if (auto err = read_payload(source, total, block))
    return err;
  size_t offset = 0;
  for (size_t i = 0; i < count; ++i) {
    x.values[i].bytes = block.slice(offset, sizes[i]);
    offset += sizes[i];
  }
  return source.end_sequence();
}

} // namespace netchan::detail
