#pragma once

// The bytes of one value, shared. On its way a value is kept in several
// places at once: the owner's buffer, then a lease (kept until the
// receiver commits) and the batch that carries it to the receiver; a
// sender's resume log and the batch it flushes. With shared bytes each of
// those copies is a reference count, not an allocation and a memory copy.
//
// A payload is a slice of a block, immutable once made. A value encoded
// alone gets a block of its own, one allocation holding the count and the
// bytes; the values of a batch that arrived share that batch's one block
// (wire/batch.hpp), which lives as long as any of them does.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <caf/deserializer.hpp>
#include <caf/error.hpp>
#include <caf/intrusive_ptr.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/serializer.hpp>

namespace netchan {

namespace detail {

/// A reference count and `size` bytes after it, in one allocation. @private
struct bytes_block {
  std::atomic<size_t> refs{1};
  size_t size = 0;

  char* bytes() noexcept {
    return reinterpret_cast<char*>(this + 1);
  }

  static bytes_block* make(size_t size);
};

void intrusive_ptr_add_ref(bytes_block* x) noexcept;
void intrusive_ptr_release(bytes_block* x) noexcept;

} // namespace detail

class payload {
public:
  payload() noexcept = default;

  /// A copy of `size` bytes at `data`, in a block of its own.
  payload(const char* data, size_t size);

  /// A copy of `bytes`.
  explicit payload(const std::vector<char>& bytes)
    : payload(bytes.data(), bytes.size()) {
  }

  /// `size` bytes to fill through `fill()` before the payload is shared.
  static payload uninitialized(size_t size);

  /// Writable only while this is the block's one reference, straight after
  /// uninitialized().
  char* fill() noexcept;

  /// Bytes [offset, offset + size) of this payload, sharing its block.
  /// Requires offset + size <= this->size().
  payload slice(size_t offset, size_t size) const;

  const char* data() const noexcept {
    return block_ ? block_->bytes() + offset_ : nullptr;
  }

  size_t size() const noexcept {
    return size_;
  }

  bool empty() const noexcept {
    return size_ == 0;
  }

  const char* begin() const noexcept {
    return data();
  }

  const char* end() const noexcept {
    return data() + size_;
  }

  std::vector<char> to_vector() const {
    return {begin(), end()};
  }

  /// By their bytes.
  friend bool operator==(const payload& x, const payload& y) noexcept;

  friend bool operator!=(const payload& x, const payload& y) noexcept {
    return !(x == y);
  }

private:
  caf::intrusive_ptr<detail::bytes_block> block_;
  size_t offset_ = 0;
  size_t size_ = 0;
};

/// Reads a payload without trusting its length prefix: CAF 0.17 sizes a byte
/// vector to the prefix before reading it, so a few bytes claiming 4 GiB
/// would make a node allocate (and zero) 4 GiB. @private
caf::error load_payload(caf::deserializer& source, payload& out);

/// Reads `size` bytes into `out`, allocating no more than the input holds.
/// @private
caf::error read_payload(caf::deserializer& source, size_t size,
                        payload& out);

/// On the wire as a byte vector: a length, then the bytes.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payload& x) {
  if constexpr (std::is_base_of<caf::deserializer, Inspector>::value) {
    return load_payload(f, x);
  } else if constexpr (std::is_base_of<caf::serializer, Inspector>::value) {
    auto size = x.size();
    if (auto err = f.begin_sequence(size))
      return err;
    if (size > 0)
      if (auto err = f.apply_raw(size, const_cast<char*>(x.data())))
        return err;
    return f.end_sequence();
  } else {
    // Printing (CAF's to_string of a message): the size says enough.
    auto bytes = x.size();
    return f(caf::meta::type_name("netchan::payload"), bytes);
  }
}

} // namespace netchan
