#pragma once

#include <cstdint>

#include <caf/meta/type_name.hpp>

namespace netchan {

/// Counters of one channel, as its owner sees them.
struct channel_stats {
  /// Values accepted from senders (into the buffer or handed over).
  uint64_t sent = 0;
  /// Values received and acknowledged (committed).
  uint64_t received = 0;
  /// Sends that failed with the value handed back (closed, timeout, ...).
  uint64_t returned = 0;
  /// Values put back at the head of the queue after a receiver failed to
  /// acknowledge them; each is delivered again flagged `redelivered`.
  uint64_t requeued = 0;
  /// Re-sent values recognised by sender and sequence number and dropped.
  uint64_t duplicates = 0;
  /// Values in the buffer now (`len`).
  uint64_t buffered = 0;
  /// Values handed to receivers and not yet acknowledged.
  uint64_t leased = 0;
  /// Slots reserved as credit for senders and not yet used.
  uint64_t reserved = 0;
  /// Senders and receivers waiting now.
  uint64_t parked_senders = 0;
  uint64_t parked_receivers = 0;
  /// Sender endpoints waiting for credit.
  uint64_t parked_reserves = 0;
  /// Capacity of the channel (`cap`).
  uint64_t capacity = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, channel_stats& x) {
  return f(caf::meta::type_name("netchan::channel_stats"), x.sent, x.received,
           x.returned, x.requeued, x.duplicates, x.buffered, x.leased,
           x.reserved, x.parked_senders, x.parked_receivers,
           x.parked_reserves, x.capacity);
}

} // namespace netchan
