#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include "netchan/detail/endpoint.hpp"
#include "netchan/envelope.hpp"

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
  /// Set once the channel is known; until then every call takes the slow
  /// path through the actor.
  bool ready = false;
  size_t capacity = 0;
  /// The owner's size limit (0: not known yet).
  size_t owner_max = 0;
  uint64_t sender_id = 0;
  uint64_t next_seq = 1;
  /// Reserved slots not yet used; changes with every send.
  uint64_t credit = 0;
  uint64_t epoch = 0;
  /// Operations the actor holds for credit / for a value: while there are
  /// any, threads queue behind them instead of overtaking.
  size_t credit_waiters = 0;
  size_t get_waiters = 0;
  std::vector<envelope> batch;
  std::deque<envelope> prefetched;
  /// Per fetched value: until when this receiver may still hand it out. A
  /// peer's owner re-queues a receiver's leases once the link was silent for
  /// middleman.connection-timeout; a value fetched with a request sent at t
  /// is safe before t + timeout/2. A process frozen (SIGSTOP) for longer
  /// must not wake up and deliver it: it goes back unread, to be fetched
  /// again (or to fail with peer_down, if the owner dropped the link).
  std::deque<std::chrono::steady_clock::time_point> fresh_until;
  /// Zero: fetched values never go stale (no connection timeout).
  caf::timespan stale_after{0};
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

/// Spawns the endpoint actor of a handle family on `channel` of `capacity`,
/// whose owner accepts values up to `owner_max` bytes (0: unknown). It stamps
/// sender id and sequence numbers, enforces deadlines by withdrawing, sends
/// on credit and fetches in batches (capacity >= 1), and acknowledges
/// received values.
///
/// `where` ("host:port/name") lets it redial a channel on another node when
/// the link breaks; empty: a broken link is the end.
caf::actor spawn_endpoint(caf::actor_system& sys, caf::actor channel,
                          flow_ptr f, std::string where = {});

/// Spawns an endpoint actor that first resolves `where` through `directory`
/// (within `timeout`), holding operations until it knows the channel, and
/// checks that it carries `type_name`. With no directory, every operation
/// fails with `error`.
caf::actor spawn_resolving_endpoint(caf::actor_system& sys, std::string where,
                                    std::string type_name, flow_ptr f,
                                    caf::actor directory,
                                    caf::timespan timeout, caf::error error);

} // namespace netchan::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(netchan::detail::thread_reply_ptr)
