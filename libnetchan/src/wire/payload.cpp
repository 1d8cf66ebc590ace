// Shared value bytes (include/netchan/payload.hpp): the block, its count,
// and the bounded read of a length-prefixed payload.

#include "netchan/payload.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include <caf/binary_deserializer.hpp>
#include <caf/sec.hpp>

namespace netchan {

namespace detail {

bytes_block* bytes_block::make(size_t size) {
  auto* x = new (::operator new(sizeof(bytes_block) + size)) bytes_block;
  x->size = size;
  return x;
}

void intrusive_ptr_add_ref(bytes_block* x) noexcept {
  x->refs.fetch_add(1, std::memory_order_relaxed);
}

void intrusive_ptr_release(bytes_block* x) noexcept {
  if (x->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    x->~bytes_block();
    ::operator delete(x);
  }
}

} // namespace detail

payload::payload(const char* data, size_t size) {
  if (size == 0)
    return;
  *this = uninitialized(size);
  std::memcpy(fill(), data, size);
}

payload payload::uninitialized(size_t size) {
  payload result;
  if (size == 0)
    return result;
  result.block_.reset(detail::bytes_block::make(size), false);
  result.size_ = size;
  return result;
}

char* payload::fill() noexcept {
  return block_ ? block_->bytes() + offset_ : nullptr;
}

payload payload::slice(size_t offset, size_t size) const {
  payload result;
  if (size == 0)
    return result;
  result.block_ = block_;
  result.offset_ = offset_ + offset;
  result.size_ = size;
  return result;
}

bool operator==(const payload& x, const payload& y) noexcept {
  return x.size() == y.size()
         && (x.size() == 0 || std::memcmp(x.data(), y.data(), x.size()) == 0);
}

caf::error read_payload(caf::deserializer& source, size_t size,
                        payload& out) {
  // From a buffer (CAF's binary_deserializer, as BASP reads messages) the
  // claim is checked against what is there before anything is allocated.
  if (auto* buffer = dynamic_cast<caf::binary_deserializer*>(&source)) {
    if (size > buffer->remaining())
      return caf::sec::end_of_stream;
    out = payload::uninitialized(size);
    return size > 0 ? source.apply_raw(size, out.fill()) : caf::none;
  }
  // Else the bytes are read as they come, a chunk at a time: a lying claim
  // ends in end_of_stream after at most one chunk past the real input.
  constexpr size_t chunk = 64 * 1024;
  std::vector<char> bytes;
  while (bytes.size() < size) {
    auto offset = bytes.size();
    auto n = std::min(chunk, size - offset);
    bytes.resize(offset + n);
    if (auto err = source.apply_raw(n, bytes.data() + offset))
      return err;
  }
  out = payload{bytes};
  return caf::none;
}

caf::error load_payload(caf::deserializer& source, payload& out) {
  size_t size = 0;
  if (auto err = source.begin_sequence(size))
    return err;
  if (auto err = read_payload(source, size, out))
    return err;
  return source.end_sequence();
}

} // namespace netchan
