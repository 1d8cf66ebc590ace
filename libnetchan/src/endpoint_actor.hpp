#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include "netchan/detail/endpoint.hpp"

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

/// Spawns the endpoint actor of a handle family on `channel` of `capacity`,
/// whose owner accepts values up to `owner_max` bytes (0: unknown). It stamps
/// sender id and sequence numbers, enforces deadlines by withdrawing, sends
/// on credit and fetches in batches (capacity >= 1), and acknowledges
/// received values.
caf::actor spawn_endpoint(caf::actor_system& sys, caf::actor channel,
                          size_t capacity, size_t owner_max);

/// Spawns an endpoint actor that first resolves `where` through `directory`
/// (within `timeout`), holding operations until it knows the channel. With
/// no directory, every operation fails with `error`.
caf::actor spawn_resolving_endpoint(caf::actor_system& sys, std::string where,
                                    size_t capacity, caf::actor directory,
                                    caf::timespan timeout, caf::error error);

} // namespace netchan::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(netchan::detail::thread_reply_ptr)
