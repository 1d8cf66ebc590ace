// The thread fast path (flow.hpp has its locking rules): a send that finds
// credit and a receive that finds a fetched value complete on the calling
// thread, with one lock and at most a nudge to the endpoint actor.

#include "endpoint/flow.hpp"

#include <caf/send.hpp>

#include "netchan/errc.hpp"

namespace netchan::detail {

void sync_slot::complete(op_result&& result) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (done_)
      return;
    result_ = std::move(result);
    done_ = true;
  }
  cv_.notify_one();
}

op_result sync_slot::wait() {
  std::unique_lock<std::mutex> guard{mtx_};
  cv_.wait(guard, [this] { return done_; });
  return std::move(result_);
}

thread_reply::~thread_reply() {
  op_result gone;
  gone.err = make_error(errc::shut_down,
                        "the channel endpoint stopped before answering; "
                        "is the actor system shutting down?");
  slot_->complete(std::move(gone));
}

nudges use_credit(flow& f, envelope&& v) {
  nudges n;
  --f.credit;
  ++f.epoch;
  v.sender = f.sender_id;
  v.seq = f.next_seq++;
  v.redelivered = false;
  f.batch.push_back(std::move(v));
  n.flush = !f.flush_posted;
  f.flush_posted = true;
  // Ask for more before running dry, so that a streaming sender does not
  // stop for a round trip each window.
  n.refill = f.credit <= send_window(f) / 2 && !f.refill_posted;
  f.refill_posted = f.refill_posted || n.refill;
  return n;
}

nudges queue_ack(flow& f, uint64_t id) {
  nudges n;
  f.acks.push_back(id);
  n.flush = !f.flush_posted;
  f.flush_posted = true;
  return n;
}

bool fresh(const flow& f) {
  return f.stale_after.count() == 0
         || std::chrono::steady_clock::now() < f.fresh_until.front();
}

nudges take_fetched(flow& f, envelope& out, bool lease) {
  nudges n;
  out = std::move(f.prefetched.front());
  f.prefetched.pop_front();
  f.fresh_until.pop_front();
  ++f.taken;
  if (lease)
    f.held_leases.insert(out.lease);
  else
    n = queue_ack(f, out.lease);
  // Keep values coming while this receiver consumes them.
  n.fetch = f.prefetched.size() <= prefetch_window(f) / 2 && !f.fetch_posted;
  f.fetch_posted = f.fetch_posted || n.fetch;
  return n;
}

bool send_fast(flow& f, const caf::actor& endpoint, envelope& value) {
  nudges n;
  {
    std::lock_guard<std::mutex> guard{f.mtx};
    if (!f.ready || f.credit == 0 || f.credit_waiters > 0
        || (f.owner_max != 0 && value.bytes.size() > f.owner_max))
      return false;
    n = use_credit(f, std::move(value));
  }
  post(n, [&](auto atom) { caf::anon_send(endpoint, atom); });
  return true;
}

bool try_credit(flow& f, const caf::actor& endpoint, envelope& value) {
  // The capacity is fixed when the flow is made: no lock needed to read it.
  return f.capacity > 0 && send_fast(f, endpoint, value);
}

std::optional<envelope> receive_fast(flow& f, const caf::actor& endpoint,
                                     bool lease) {
  envelope v;
  nudges n;
  {
    std::lock_guard<std::mutex> guard{f.mtx};
    if (!f.ready || f.prefetched.empty() || f.get_waiters > 0 || !fresh(f))
      return std::nullopt;
    n = take_fetched(f, v, lease);
  }
  post(n, [&](auto atom) { caf::anon_send(endpoint, atom); });
  return v;
}

} // namespace netchan::detail
