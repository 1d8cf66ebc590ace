// Sending on credit (capacity N >= 1): a send completes as soon as its
// value holds a slot the owner reserved for this endpoint. Credit comes in
// chunks (reserve), is topped up unasked while the sender streams (grant),
// and goes back when the sender idles (unreserve); values go out in
// batches, one put_batch per flush, and are kept until a credit answer
// shows the owner has them, so that a resume can send them again.
//
// Messages it sends: put_batch, ack_many, reserve, hurry, unreserve.

#include "endpoint/endpoint.hpp"

#include <caf/make_message.hpp>
#include <caf/message_id.hpp>

#include "wire/batch.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

void endpoint_actor::send_on_credit(op_request req, waiter w) {
  std::optional<nudges> sent;
  locked([&](flow& f) {
    if (f.credit > 0 && credit_waiters_.empty())
      sent = use_credit(f, std::move(req.value));
  });
  if (sent) {
    post_self(*sent);
    deliver(w, op_result{});
    return;
  }
  if (!hold(credit_waiters_, std::move(req), std::move(w)))
    return;
  if (reserving_ && !urgent_) {
    // A request for credit ahead of need is out: someone waits now, so one
    // free slot is enough (the owner otherwise waits for a chunk).
    urgent_ = true;
    send(channel_, hurry_atom::value);
  }
  want_credit();
}

void endpoint_actor::want_credit() {
  // While streaming, the owner tops our credit up unasked: only a blocked
  // caller asks (urgent: the owner answers as soon as one slot is free).
  if (reserving_ || !linked() || (streaming_ && credit_waiters_.empty()))
    return;
  auto want = locked([this](flow& f) {
    auto window = send_window(f);
    return std::max<uint64_t>(window > f.credit ? window - f.credit : 0,
                              credit_waiters_.size());
  });
  if (want == 0)
    return;
  reserving_ = true;
  urgent_ = !credit_waiters_.empty();
  request(channel_, caf::infinite, reserve_atom::value, want, urgent_, id_)
    .then(on_this_link([this](uint64_t granted, uint64_t last_seq) {
            reserving_ = false;
            urgent_ = false;
            streaming_ = true;
            add_credit(granted, last_seq);
          }),
          on_this_link([this](caf::error& err) {
            reserving_ = false;
            urgent_ = false;
            fail_held(credit_waiters_, err); // closed: the values stay ours
            sync_waiters();
          }));
}

/// Credit from the owner, asked for or not: it goes to the calls waiting
/// for it first.
void endpoint_actor::add_credit(uint64_t granted, uint64_t last_seq) {
  confirmed(last_seq);
  std::vector<waiter> done;
  nudges n;
  locked([&](flow& f) {
    f.credit += granted;
    while (f.credit > 0 && !credit_waiters_.empty()) {
      auto h = std::move(credit_waiters_.front());
      credit_waiters_.pop_front();
      auto step = use_credit(f, std::move(h.req.value));
      n.flush |= step.flush;
      n.refill |= step.refill; // refill_posted is set: must post
      done.push_back(std::move(h.w));
    }
    f.credit_waiters = credit_waiters_.size();
  });
  post_self(n);
  for (auto& w : done)
    deliver(w, op_result{});
  if (!credit_waiters_.empty())
    want_credit();
  else
    schedule_idle_check();
}

/// Sends what accumulated since the last flush: values in one message,
/// acknowledgements in another.
void endpoint_actor::flush() {
  if (!linked()) {
    // Kept: values and acknowledgements are settled by the resume.
    locked([](flow& f) { f.flush_posted = false; });
    return;
  }
  std::vector<envelope> batch;
  std::vector<uint64_t> acks;
  locked([&](flow& f) {
    f.flush_posted = false;
    batch.swap(f.batch);
    acks.swap(f.acks);
  });
  if (!batch.empty()) {
    send_batch(std::move(batch));
    schedule_idle_check();
  }
  if (!acks.empty())
    send(channel_, ack_many_atom::value, std::move(acks));
}

/// Sends values on credit, and keeps the message until the owner's credit
/// answers show it has them: a broken link may lose it.
void endpoint_actor::send_batch(std::vector<envelope> batch) {
  if (batch.empty())
    return;
  auto last = batch.back().seq;
  auto msg = caf::make_message(put_batch_atom::value,
                               detail::batch{std::move(batch)});
  unconfirmed_.emplace_back(last, msg);
  channel_->enqueue(ctrl(), caf::make_message_id(), std::move(msg), context());
}

/// The owner has every value of ours up to `last_seq`.
void endpoint_actor::confirmed(uint64_t last_seq) {
  while (!unconfirmed_.empty() && unconfirmed_.front().first <= last_seq)
    unconfirmed_.pop_front();
}

/// Unused credit goes back once no value was sent on it for idle_credit.
void endpoint_actor::schedule_idle_check() {
  arm_once(idle_check_armed_, idle_atom::value,
           [](flow& f) { return f.epoch; });
}

void endpoint_actor::idle_check(uint64_t epoch) {
  idle_check_armed_ = false;
  auto idle = locked([&](flow& f) { return epoch == f.epoch; });
  if (!idle)
    schedule_idle_check(); // sent since: look again later
  else if (credit_waiters_.empty())
    return_credit();
}

/// Sends what waits, and gives unused credit back, so that other senders
/// may use the slots; the owner stops topping us up. Not while a reserve is
/// out: its answer registers us again (and arms the idle check).
void endpoint_actor::return_credit() {
  flush();
  if (!linked() || reserving_)
    return;
  auto n = locked([](flow& f) { return std::exchange(f.credit, 0); });
  if (n > 0 || streaming_)
    send(channel_, unreserve_atom::value, n);
  streaming_ = false;
}

} // namespace netchan::detail
