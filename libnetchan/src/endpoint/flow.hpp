#pragma once

// The thread fast path: what an endpoint actor shares with the threads that
// use its handles, and the steps a thread takes on it without a message.
//
// Locking rules (the only place in the endpoint where threads and the actor
// meet):
//   - every field of `flow` except `capacity` is read and written under
//     `flow::mtx`; `capacity` is fixed before the flow is shared;
//   - the lock is held for a step of bookkeeping only: never while sending
//     a message, delivering a verdict or waiting; what a step needs the
//     actor to do comes out as `nudges`, posted after the lock is released;
//   - a thread never waits on the actor under the lock, and the actor never
//     runs application code under it, so neither can deadlock the other;
//   - while the actor holds operations waiting for credit or for a value
//     (`credit_waiters`, `get_waiters`), threads queue behind them (slow
//     path) instead of overtaking: a handle's calls keep their order.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_set>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/timespan.hpp>

#include "netchan/detail/endpoint.hpp"
#include "netchan/envelope.hpp"
#include "util/queue.hpp"

namespace netchan::detail {

/// Where a blocked thread waits for its operation's verdict.
class sync_slot {
public:
  /// Stores the verdict and wakes the waiting thread; later calls are ignored.
  void complete(op_result&& result);

  op_result wait();

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool done_ = false;
  op_result result_;
};

/// Travels with a thread's request. If it is destroyed before delivering
/// (the endpoint actor died, or the message never reached it), the thread
/// wakes with `errc::shut_down` instead of waiting forever.
class thread_reply {
public:
  explicit thread_reply(std::shared_ptr<sync_slot> slot)
    : slot_(std::move(slot)) {
  }

  ~thread_reply();

  void deliver(op_result&& result) {
    slot_->complete(std::move(result));
  }

private:
  std::shared_ptr<sync_slot> slot_;
};

using thread_reply_ptr = std::shared_ptr<thread_reply>;

/// What an endpoint's actor shares with the threads that use its handles, on
/// channels of capacity N >= 1: credit, values waiting to go out, values
/// fetched ahead, acknowledgements to send. A thread that finds credit (or a
/// fetched value) takes it here and returns at once: no message to the
/// actor and no wait, except a nudge to flush when a batch starts.
struct flow {
  std::mutex mtx;
  /// Set while the endpoint is linked to its channel; otherwise every call
  /// takes the slow path through the actor.
  bool ready = false;
  size_t capacity = 0;
  /// The owner's size limit (0: not known yet).
  size_t owner_max = 0;
  uint64_t sender_id = 0;
  uint64_t next_seq = 1;
  /// Reserved slots not yet used; changes with every send.
  uint64_t credit = 0;
  /// Counts sends on credit: the actor's idle check compares it.
  uint64_t epoch = 0;
  /// Operations the actor holds for credit / for a value: while there are
  /// any, threads queue behind them instead of overtaking.
  size_t credit_waiters = 0;
  size_t get_waiters = 0;
  /// Values sent on credit, not flushed to the owner yet.
  std::vector<envelope> batch;
  /// Values fetched ahead of this receiver's calls, each leased to it.
  queue<envelope> prefetched;
  /// Per fetched value: until when this receiver may still hand it out. A
  /// peer's owner re-queues a receiver's leases once the link was silent for
  /// middleman.connection-timeout; a value fetched with a request sent at t
  /// is safe before t + timeout/2. A process frozen (SIGSTOP) for longer
  /// must not wake up and deliver it: it goes back unread, to be fetched
  /// again (or to fail with peer_down, if the owner dropped the link).
  queue<std::chrono::steady_clock::time_point> fresh_until;
  /// Zero: fetched values never go stale (no connection timeout).
  caf::timespan stale_after{0};
  /// Leases of values a plain receive took, to acknowledge at the flush.
  std::vector<uint64_t> acks;
  /// Leases the application holds (receive_lease), until it commits or
  /// releases them: a resume after a broken link keeps them.
  std::unordered_set<uint64_t> held_leases;
  /// A nudge is on its way to the actor already.
  bool flush_posted = false;
  bool refill_posted = false;
  bool fetch_posted = false;
  /// Counts values taken from `prefetched`: the actor fetches ahead only
  /// for a receiver that consumes.
  uint64_t taken = 0;
};

using flow_ptr = std::shared_ptr<flow>;

/// The thread side: sends `value` on credit if there is any; false means
/// "take the slow path".
bool send_fast(flow& f, const caf::actor& endpoint, envelope& value);

/// The thread side of a send that costs no message and never waits: uses
/// credit the endpoint already holds, on any capacity (0 never has any).
/// False leaves `value` untouched, for a send to another endpoint or for
/// the slow path.
bool try_credit(flow& f, const caf::actor& endpoint, envelope& value);

/// The thread side: a fetched value, if one is at hand.
std::optional<envelope> receive_fast(flow& f, const caf::actor& endpoint,
                                     bool lease);

// -- steps shared by threads and the actor (all require the lock) ------------

/// Values a sender may have on credit at once, and values a receiver may
/// fetch ahead of its calls: bounded by the capacity, since both count
/// against it at the owner.
constexpr uint64_t max_send_window = 1024;
constexpr uint64_t max_prefetch = 256;

inline uint64_t send_window(const flow& f) {
  return std::min<uint64_t>(f.capacity, max_send_window);
}

inline uint64_t prefetch_window(const flow& f) {
  return std::min<uint64_t>(f.capacity, max_prefetch);
}

/// What the actor must do after a step: flush the batch, ask for credit,
/// fetch values. Each is posted at most once until the actor ran it.
struct nudges {
  bool flush = false;
  bool refill = false;
  bool fetch = false;
};

/// Puts `v` on credit into the outgoing batch. Requires credit.
nudges use_credit(flow& f, envelope&& v);

/// Queues the acknowledgement of lease `id` for the next flush.
nudges queue_ack(flow& f, uint64_t id);

/// Whether the next fetched value may still be handed out (see flow).
/// Requires a value.
bool fresh(const flow& f);

/// Takes the next fetched value into `out`. Requires a fresh value.
nudges take_fetched(flow& f, envelope& out, bool lease);

/// The atoms of the nudges (self-messages of the endpoint actor).
using flush_atom = caf::atom_constant<caf::atom("nc_flush")>;
using refill_atom = caf::atom_constant<caf::atom("nc_refill")>;
using fetch_atom = caf::atom_constant<caf::atom("nc_fetch")>;

/// Sends each nudge of `n` through `send(atom)`.
template <class Send>
void post(const nudges& n, Send send) {
  if (n.flush)
    send(flush_atom::value);
  if (n.refill)
    send(refill_atom::value);
  if (n.fetch)
    send(fetch_atom::value);
}

} // namespace netchan::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(netchan::detail::thread_reply_ptr)
