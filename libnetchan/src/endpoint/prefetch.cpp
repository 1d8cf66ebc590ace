// Fetching ahead (capacity N >= 1): values come from the owner in batches
// of up to (waiting calls + prefetch window), each leased to this endpoint
// until acknowledged. A receiver that stops taking them gives them back
// unread (unflagged: they were never delivered), and so does one that held
// them too long to be sure the owner still counts them as its own.
//
// Messages it sends: get_many, withdraw (of a get_many), unread; the
// acknowledgements ride on the flush (credit.cpp).

#include "endpoint/endpoint.hpp"

#include "netchan/errc.hpp"
#include "wire/batch.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

void endpoint_actor::receive_fetched(op_request req, waiter w) {
  return_stale();
  std::optional<std::pair<envelope, nudges>> got;
  locked([&](flow& f) {
    if (!f.prefetched.empty() && get_waiters_.empty()) {
      envelope v;
      auto n = take_fetched(f, v, req.lease);
      got.emplace(std::move(v), n);
    }
  });
  if (got) {
    post_self(got->second);
    hand_to(req, w, std::move(got->first));
    return;
  }
  if (hold(get_waiters_, std::move(req), std::move(w)))
    fetch();
}

/// Completes a receive. A plain receive's acknowledgement was queued by
/// take_fetched, or (`ack`: a value fetched for a waiting call) is queued
/// here.
void endpoint_actor::hand_to(const op_request& req, waiter& w, envelope v,
                             bool ack) {
  op_result res;
  if (req.lease) {
    res.lease_id = v.lease;
    if (ack)
      locked([&](flow& f) { f.held_leases.insert(v.lease); });
  } else if (ack) {
    post_self(locked([&](flow& f) { return queue_ack(f, v.lease); }));
  }
  res.value = std::move(v);
  deliver(w, std::move(res));
}

/// Asks the owner for values: for the calls waiting here, and ahead for
/// this receiver's next calls while it consumes.
void endpoint_actor::fetch() {
  if (fetching_)
    return;
  auto max = locked([this](flow& f) {
    auto room = prefetch_window(f);
    room = f.prefetched.size() < room ? room - f.prefetched.size() : 0;
    return get_waiters_.empty() ? room : get_waiters_.size() + room;
  });
  if (!linked() || max == 0 || (get_waiters_.empty() && !consuming()))
    return;
  fetching_ = true;
  fetch_op_ = next_op_++;
  auto op = fetch_op_;
  auto fresh_until = std::chrono::steady_clock::now() + stale_after_;
  // Only calls that wait may park at the owner: fetching ahead takes what
  // is there and never queues before receivers that are blocked.
  auto may_park = !get_waiters_.empty();
  request(channel_, caf::infinite, get_many_atom::value, fetch_op_, max,
          may_park)
    .then(on_this_link([this, op, fresh_until](batch& values) {
            fetched(op, fresh_until, values.values);
          }),
          on_this_link([this](caf::error& err) {
            fetching_ = false;
            if (is(err, errc::timeout) || is(err, errc::would_block)) {
              fetch(); // withdrawn, or nothing ahead: again if someone waits
            } else {
              fail_held(get_waiters_, err);
              sync_waiters();
            }
          }));
}

/// The answer to fetch `op`: values go to the calls waiting, the rest are
/// kept for the next calls.
void endpoint_actor::fetched(uint64_t op,
                             std::chrono::steady_clock::time_point fresh_until,
                             std::vector<envelope>& values) {
  fetching_ = false;
  // The owner answered this request, so it had every message we sent before
  // it, the leases we returned among them.
  while (!returned_.empty() && returned_.front().first <= op)
    returned_.pop_front();
  for (auto& v : values)
    saw_lease(v.lease);
  std::vector<std::pair<held_op, envelope>> done;
  locked([&](flow& f) {
    for (auto& v : values) {
      if (!get_waiters_.empty()) {
        done.emplace_back(std::move(get_waiters_.front()), std::move(v));
        get_waiters_.pop_front();
      } else {
        f.prefetched.push_back(std::move(v));
        f.fresh_until.push_back(fresh_until);
      }
    }
    f.get_waiters = get_waiters_.size();
  });
  for (auto& [h, v] : done)
    hand_to(h.req, h.w, std::move(v), true);
  schedule_unread_check();
  fetch();
}

/// Values fetched ahead that this receiver leaves untaken go back to the
/// channel, unflagged (they were never delivered), for other receivers.
void endpoint_actor::schedule_unread_check() {
  arm_once(unread_check_armed_, unread_check_atom::value,
           [](flow& f) { return f.taken; });
}

void endpoint_actor::return_unread(uint64_t taken_then) {
  std::vector<uint64_t> unread;
  bool busy = false;
  locked([&](flow& f) {
    if (f.prefetched.empty())
      return;
    if (f.taken != taken_then || !get_waiters_.empty()) {
      busy = true; // still consuming: look again later
      return;
    }
    for (auto& v : f.prefetched)
      unread.push_back(v.lease);
    f.prefetched.clear();
    f.fresh_until.clear();
  });
  if (busy)
    schedule_unread_check();
  give_back_unread(std::move(unread));
}

/// Returns fetched values to the owner unread; it re-queues them at the
/// head, unflagged. Remembered until the owner shows it had them, so that a
/// resume returns them again if the message was lost with the link.
void endpoint_actor::give_back_unread(std::vector<uint64_t> ids) {
  if (ids.empty())
    return;
  returned_.emplace_back(next_op_, ids);
  if (linked())
    send(channel_, unread_atom::value, std::move(ids));
}

/// Fetched values held too long to be sure the owner still counts them as
/// ours (see flow::fresh_until) go back unread instead of to the caller.
void endpoint_actor::return_stale() {
  std::vector<uint64_t> stale;
  locked([&](flow& f) {
    while (!f.prefetched.empty() && !fresh(f)) {
      stale.push_back(f.prefetched.front().lease);
      f.prefetched.pop_front();
      f.fresh_until.pop_front();
    }
  });
  give_back_unread(std::move(stale));
}

/// Whether this receiver took a fetched value since the last fetch: only
/// then is it worth fetching ahead of its calls.
bool endpoint_actor::consuming() {
  return locked([this](flow& f) {
    auto taken = f.taken != last_taken_;
    last_taken_ = f.taken;
    return taken;
  });
}

} // namespace netchan::detail
