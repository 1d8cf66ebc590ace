#pragma once

// The non-template core behind sender<T>, receiver<T> and lease<T>: every
// handle serializes T at the edge and hands bytes to this code, compiled once
// in libnetchan. @private

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/timespan.hpp>

#include "netchan/envelope.hpp"
#include "netchan/stats.hpp"

namespace netchan::detail {

/// What a handle asks its endpoint actor to do.
enum class op_kind : uint8_t { put, get, commit, release, close, len, stats };

/// No deadline.
constexpr caf::timespan no_deadline = caf::timespan::max();

/// One operation, as sent by a handle to its endpoint actor.
struct op_request {
  op_kind kind = op_kind::put;
  /// put: the value (its payload and type; the endpoint stamps the rest).
  envelope value;
  /// put/get: false for try_send/try_receive (never waits).
  bool may_park = true;
  /// put/get: withdraw the operation after this long.
  caf::timespan timeout = no_deadline;
  /// get: keep the value leased until commit (receive_lease).
  bool lease = false;
  /// commit/release: which lease.
  uint64_t lease_id = 0;
};

/// The endpoint's answer.
struct op_result {
  caf::error err;
  /// get: the value.
  envelope value;
  /// get with lease: the lease to commit or release.
  uint64_t lease_id = 0;
  /// len: the count.
  uint64_t count = 0;
  /// stats: the counters.
  channel_stats stats;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, op_request& x) {
  return f(caf::meta::type_name("netchan::op_request"), x.kind, x.value,
           x.may_park, x.timeout, x.lease, x.lease_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, op_result& x) {
  return f(caf::meta::type_name("netchan::op_result"), x.err, x.value,
           x.lease_id, x.count, x.stats);
}

class channel_owner;
struct flow;

/// The endpoint actor of one handle family (a handle and its copies) and
/// what keeps it and its channel alive. Thread-safe.
class endpoint {
public:
  /// An endpoint on `channel`. `where` is the channel's address for other
  /// nodes ("host:port/name"), empty for an anonymous local channel;
  /// `owner_max` the owner's size limit (0: the same as ours).
  endpoint(caf::actor_system& sys, caf::actor channel,
           std::shared_ptr<channel_owner> owner, std::string type_name,
           size_t capacity, size_t max_message_size, std::string where = {},
           size_t owner_max = 0);

  /// An endpoint of a channel known only by its address (a handle that
  /// arrived inside a value): its actor resolves it through `directory` on
  /// first use; without a directory every operation fails with `error`.
  endpoint(caf::actor_system& sys, std::string where, std::string type_name,
           size_t capacity, caf::actor directory, caf::timespan timeout,
           caf::error error);

  ~endpoint();

  endpoint(const endpoint&) = delete;
  endpoint& operator=(const endpoint&) = delete;

  /// Runs `req` and blocks the calling thread until its verdict. Never call
  /// this from inside an actor: use the actor API, which never blocks.
  op_result call(op_request req) const;

  /// Sends `value` on credit this endpoint already holds: no message to the
  /// owner and no wait. False (value untouched) if it holds none; then only
  /// `call` can send it.
  bool try_credit(envelope& value) const;

  /// Runs `req` without waiting for its verdict (a lease's destructor).
  void post(op_request req) const;

  /// The endpoint actor, for the actor API (`request(actor(), ...)`).
  const caf::actor& actor() const noexcept {
    return actor_;
  }

  caf::actor_system& system() const noexcept {
    return *sys_;
  }

  const std::string& type_name() const noexcept {
    return type_name_;
  }

  size_t capacity() const noexcept {
    return capacity_;
  }

  size_t max_message_size() const noexcept {
    return max_message_size_;
  }

  /// The id this endpoint stamps on the values it sends; a client's
  /// identity in listen/dial.
  uint64_t sender_id() const;

  /// The channel actor of an anonymous local channel; null otherwise.
  caf::actor local_channel() const;

  /// The address other nodes reach this channel at. An anonymous channel is
  /// published on this node's directory on the first call; that fails if
  /// the process runs no listening node.
  caf::expected<std::string> global_address() const;

private:
  op_result call_impl(op_request req) const;

  caf::actor_system* sys_;
  std::shared_ptr<flow> flow_;
  caf::actor actor_;
  std::shared_ptr<channel_owner> owner_;
  std::string type_name_;
  size_t capacity_;
  size_t max_message_size_;
  std::string where_;
};

using endpoint_ptr = std::shared_ptr<const endpoint>;

/// Owns the channel actor of an anonymous channel: stops it when the last
/// handle is gone.
class channel_owner {
public:
  explicit channel_owner(caf::actor channel) : channel_(std::move(channel)) {
  }

  ~channel_owner();

  const caf::actor& channel() const noexcept {
    return channel_;
  }

  /// Makes the channel reachable from other nodes (once) and returns its
  /// address there.
  caf::expected<std::string> publish(caf::actor_system& sys,
                                     const std::string& type_name,
                                     size_t capacity);

private:
  caf::actor channel_;
  std::mutex mtx_;
  std::string where_;
};

/// What a handle looks like on the wire: where its channel lives, what it
/// carries, how large it is. Resolved through the directory on arrival.
struct handle_ref {
  std::string where;
  std::string type_name;
  uint64_t capacity = 0;
};

/// Fills `out` for a handle about to leave the process. @private
caf::error export_handle(const endpoint_ptr& ep, handle_ref& out);

/// An endpoint for a handle that arrived inside a value. @private
endpoint_ptr import_handle(caf::actor_system& sys, const handle_ref& ref);

/// Creates an anonymous channel and the endpoints of its first sender and
/// receiver. Fails with `errc::invalid_argument` for an unusable type name.
/// A capacity of `default_capacity` means `netchan.default-capacity`.
caf::expected<std::pair<endpoint_ptr, endpoint_ptr>>
make_local_channel(caf::actor_system& sys, std::string type_name,
                   size_t capacity, std::string name);

/// Stands for "the configured default" where a capacity is expected.
constexpr size_t default_capacity = static_cast<size_t>(-1);

} // namespace netchan::detail
