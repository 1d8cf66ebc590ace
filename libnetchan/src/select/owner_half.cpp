// The owner half of select: a channel's side of the commit protocol whose
// selector half is selector.cpp (which describes the whole protocol). Here a
// select's case becomes an offer in the channel's own queues, a claim when
// it comes up, and a commit or an abandonment when its selectors answer.
//
// Messages handled (channel_state's select operations):
//   (offer_get, op, may_park), (offer_put, op, envelope, may_park),
//   (claim_reply, claim_id, granted)
// Messages sent (through channel_callee):
//   offer_state (parked, would_block, failed), claim, claim_end,
//   offer_value, offer_done

#include <algorithm>

#include "channel/channel_state.hpp"
#include "hook/test_hook.hpp"

namespace netchan::detail {

void channel_state::offer_get(const party_id& selector, uint64_t op,
                              bool may_park) {
  watch(selector);
  if (drained()) {
    out_.offer_answer(selector, op, offer_state::failed, closed_error());
    return;
  }
  recvq_.push_back(waiting_receive{selector, op, false, 1, via::offer, {}});
  first_answer(selector, op, false, may_park);
}

void channel_state::offer_put(const party_id& selector, uint64_t op,
                              envelope value, bool may_park) {
  watch(selector);
  if (auto err = admit(value)) {
    ++stats_.returned;
    out_.offer_answer(selector, op, offer_state::failed, std::move(err));
    return;
  }
  value.seq = 0; // a select's value is not in its sender's sequence
  sendq_.push_back(
    waiting_send{selector, op, std::move(value), false, via::offer, {}});
  first_answer(selector, op, true, may_park);
}

/// A new offer's first answer: a claim if it can complete now (sent by
/// dispatch), else parked, or would_block for a select with a default.
void channel_state::first_answer(const party_id& selector, uint64_t op,
                                 bool is_put, bool may_park) {
  dispatch();
  auto mine = [&](auto& x) {
    return x.how == via::offer && x.from == selector && x.op == op;
  };
  auto still_waiting = [&](auto& q) {
    auto i = std::find_if(q.begin(), q.end(), mine);
    if (i == q.end())
      return false;
    if (!may_park)
      q.erase(i);
    return true;
  };
  if (is_put ? still_waiting(sendq_) : still_waiting(recvq_)) {
    out_.offer_answer(selector, op,
                      may_park ? offer_state::parked
                               : offer_state::would_block,
                      caf::error{});
    return;
  }
  // Claimed: the claim is the answer if it went to this selector. If
  // another selector is asked first, this one hears "parked" now: it must
  // not wait for this case before answering claims, or two selectors could
  // wait for each other.
  for (auto& [id, c] : claims_)
    for (size_t k = c.granted + 1; k < c.order_is_put.size(); ++k)
      if (c.selector(k) == selector && c.op(k) == op)
        out_.offer_answer(selector, op, offer_state::parked, caf::error{});
}

void channel_state::start_claim(claim c) {
  auto id = next_claim_++;
  if (c.put && c.put->how == via::offer)
    c.order_is_put.push_back(true);
  if (c.get && c.get->how == via::offer)
    c.order_is_put.push_back(false);
  if (c.order_is_put.size() == 2 && c.get->from < c.put->from)
    c.order_is_put = {false, true};
  auto& stored = claims_.emplace(id, std::move(c)).first->second;
  ask(id, stored);
}

void channel_state::ask(uint64_t id, const claim& c) {
  out_.claim(c.selector(c.granted), c.op(c.granted), id);
}

void channel_state::claim_reply(const party_id& selector, uint64_t id,
                                bool granted) {
  auto i = claims_.find(id);
  if (i == claims_.end()) {
    // Abandoned while the selector's grant was on its way: it holds every
    // other claim until it hears the end of this one.
    if (granted)
      out_.claim_end(selector, id, false);
    return;
  }
  if (!granted) {
    abandon_claim(id, selector);
    return;
  }
  auto& c = i->second;
  if (++c.granted < c.order_is_put.size()) {
    ask(id, c);
    return;
  }
  auto done = std::move(c);
  claims_.erase(i);
  for (size_t k = 0; k < done.order_is_put.size(); ++k)
    out_.claim_end(done.selector(k), id, true);
  commit(std::move(done));
}

/// Every selector of the match consented: the match happens.
void channel_state::commit(claim c) {
  if (c.value) {
    // A receive offer's buffered value.
    claimed_slots_ -= c.value->counted ? 1 : 0;
    auto copy = lease_out(c.get->from, std::move(c.value->value),
                          c.value->counted, std::nullopt);
    out_.offer_value(c.get->from, c.get->op, std::move(copy));
    test_hook::reached("owner-handed");
  } else if (c.holds_slot) {
    // A send offer's slot.
    --claimed_slots_;
    ++stats_.sent;
    out_.offer_done(c.put->from, c.put->op, caf::error{});
    push(std::move(c.put->value), true);
  } else {
    // Capacity 0: the sender is released when the receiver takes it.
    auto s = std::move(*c.put);
    if (s.how == via::offer)
      s.how = via::selector;
    accept(s);
    auto copy = s.value;
    if (c.get->how == via::request) {
      hand_over(*c.get, std::move(copy), false, std::move(s));
    } else {
      auto leased = lease_out(c.get->from, std::move(copy), false,
                              std::move(s));
      out_.offer_value(c.get->from, c.get->op, std::move(leased));
      test_hook::reached("owner-handed");
    }
  }
  dispatch();
}

/// A claim that will not complete: a selector refused it (it chose another
/// case) or is gone (`refuser`), or the channel closed (`send_error`).
/// Every selector it asked, but the refuser, hears that it ended: those
/// that consented are free again, and the one asked last must not grant it
/// later and then wait for its end. The refusing offer is dropped; a send
/// fails with `send_error` if set; every other party goes back to the head
/// of its queue.
void channel_state::abandon_claim(uint64_t id, const party_id& refuser,
                                  const caf::error& send_error) {
  auto i = claims_.find(id);
  if (i == claims_.end())
    return;
  auto c = std::move(i->second);
  claims_.erase(i);
  for (size_t k = 0; k <= c.granted && k < c.order_is_put.size(); ++k)
    if (c.selector(k) != refuser)
      out_.claim_end(c.selector(k), id, false);
  auto refusing = [&](auto& x) {
    return x.how == via::offer && x.from == refuser;
  };
  if (c.put && !refusing(*c.put)) {
    if (!send_error)
      sendq_.push_front(std::move(*c.put));
    else if (c.put->how == via::offer)
      out_.offer_answer(c.put->from, c.put->op, offer_state::failed,
                        send_error);
    else {
      ++stats_.returned;
      answer(*c.put, send_error);
    }
  }
  if (c.get && !refusing(*c.get))
    recvq_.push_front(std::move(*c.get));
  if (c.value) {
    claimed_slots_ -= c.value->counted ? 1 : 0;
    push_front(std::move(c.value->value), c.value->counted);
  }
  if (c.holds_slot)
    --claimed_slots_;
  dispatch();
}

} // namespace netchan::detail
