#pragma once

#include <cstddef>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "netchan/detail/endpoint.hpp"
#include "netchan/stats.hpp"

namespace netchan::detail {

/// What senders and receivers share, compiled once. @private
class handle_base {
public:
  /// Closes the channel, as Go's `close(ch)`. A second close reports
  /// `errc::closed`.
  [[nodiscard]] caf::error close() const;

  /// Number of values in the channel's buffer (`len(ch)`), asked of its owner.
  [[nodiscard]] caf::expected<size_t> len() const;

  /// Capacity of the channel (`cap(ch)`); 0 for a rendezvous channel.
  size_t cap() const noexcept;

  /// The owner's counters for this channel.
  [[nodiscard]] caf::expected<channel_stats> stats() const;

  /// Whether this handle refers to a channel.
  explicit operator bool() const noexcept {
    return ep_ != nullptr;
  }

  /// @private
  const endpoint_ptr& endpoint_ref() const noexcept {
    return ep_;
  }

  /// Points this handle at another endpoint (deserialization). @private
  void assign(endpoint_ptr ep) noexcept {
    ep_ = std::move(ep);
  }

  /// Handles are equal when they share an endpoint (copies of each other).
  friend bool operator==(const handle_base& x, const handle_base& y) noexcept {
    return x.ep_ == y.ep_;
  }

  friend bool operator!=(const handle_base& x, const handle_base& y) noexcept {
    return !(x == y);
  }

  /// Builds the request of a put, checking size limits at the edge. @private
  caf::expected<op_request> make_put(payload&& bytes,
                                     bool may_park,
                                     caf::timespan timeout) const;

protected:
  handle_base() = default;

  explicit handle_base(endpoint_ptr ep) : ep_(std::move(ep)) {
  }

  /// Sends serialized bytes; the caller keeps its value whatever happens.
  caf::error put(payload&& bytes, bool may_park,
                 caf::timespan timeout) const;

  /// Receives bytes; `would_block` comes back as an error for try calls.
  op_result get(bool may_park, caf::timespan timeout, bool lease) const;

  /// Runs an operation that carries no value (close, len, stats).
  op_result query(op_kind kind) const;

  caf::error empty_handle() const;

  endpoint_ptr ep_;
};

/// Settles a lease: commits it (done with) or releases it (re-queued for
/// another receiver). @private
[[nodiscard]] caf::error settle_lease(const endpoint& ep, uint64_t lease_id,
                                      bool commit);

/// Releases a lease without waiting (a lease destroyed unsettled). @private
void abandon_lease(const endpoint& ep, uint64_t lease_id) noexcept;

} // namespace netchan::detail
