// The channel's semantics (channel_state.hpp has the invariant). Each
// public operation reads as runtime/chan.go's chansend and chanrecv do:
// closed -> a counterpart waiting -> a free slot -> not allowed to wait ->
// wait; then dispatch() moves whatever can move now.

#include "channel/channel_state.hpp"

#include <algorithm>

#include "netchan/errc.hpp"
#include "netchan/link_event.hpp"
#include "hook/test_hook.hpp"

namespace netchan::detail {

channel_state::channel_state(channel_spec spec, channel_callee& out)
  : spec_(std::move(spec)), out_(out) {
}

// -- sending ------------------------------------------------------------------

void channel_state::put(const party_id& from, uint64_t op, envelope value,
                        put_mode mode, reply rp) {
  auto& p = watch(from);
  if (p.reissued.erase(op) != 0) {
    // Sent again after a resume: if we hold it still, its verdict goes to
    // the new request; if we accepted it meanwhile, it is done.
    if (adopt(from, op, rp))
      return;
    if (is_duplicate(value)) {
      out_.sent(from, op, rp, caf::error{});
      return;
    }
  }
  auto reserved = mode == put_mode::reserved;
  if (auto err = admit(value, reserved)) {
    ++stats_.returned;
    out_.sent(from, op, rp, std::move(err));
    return;
  }
  if (reserved) {
    if (p.credit == 0) {
      out_.sent(from, op, rp,
                make_error(errc::invalid_argument,
                           "a reserved send arrived without credit"));
      return;
    }
    --p.credit;
    --reserved_;
  }
  if (is_duplicate(value)) {
    ++stats_.duplicates;
    out_.sent(from, op, rp, caf::error{});
    return;
  }
  waiting_send s{from, op, std::move(value), mode == put_mode::try_once,
                 via::request, std::move(rp)};
  // At capacity 0, a plain receiver first: a select's would need a claim.
  auto r = spec_.capacity == 0 ? first_plain(recvq_) : recvq_.end();
  if (reserved || (spec_.capacity > 0 && free_slots() > 0)) {
    // Reserved: the slot was ours already; it moves to the buffer.
    accept(s);
    push(std::move(s.value), true);
    out_.sent(from, op, s.rp, caf::error{});
  } else if (r != recvq_.end()) {
    accept(s);
    auto receiver = std::move(*r);
    recvq_.erase(r);
    auto copy = s.value; // the sender keeps its copy until taken
    hand_over(receiver, std::move(copy), false, std::move(s));
  } else if (s.is_try) {
    out_.sent(from, op, s.rp, make_error(errc::would_block));
  } else {
    sendq_.push_back(std::move(s));
  }
  dispatch();
}

void channel_state::put_batch(const party_id& from,
                              std::vector<envelope>& values) {
  auto& p = watch(from);
  for (auto& v : values) {
    caf::error err;
    if (p.credit == 0) {
      err = make_error(errc::invalid_argument,
                       "a value arrived without credit");
    } else {
      // The slot is used up either way: the sender counted it as spent.
      --p.credit;
      --reserved_;
      err = admit(v, true);
    }
    if (err) {
      // The sender's edge checks type and size with our limits, so this is
      // a protocol violation: refuse loudly, to the sender.
      ++stats_.returned;
      out_.refuse(from, v.seq, std::move(err));
      continue;
    }
    if (is_duplicate(v)) {
      ++stats_.duplicates;
      continue;
    }
    ++stats_.sent;
    if (v.seq != 0)
      last_seq_[v.sender] = v.seq;
    push(std::move(v), true);
    test_hook::reached("owner-accepted");
  }
  dispatch();
}

// -- receiving ----------------------------------------------------------------

void channel_state::get(const party_id& from, uint64_t op, bool many,
                        uint64_t max, bool may_park, reply rp) {
  watch(from);
  waiting_receive r{from, op, many, std::max<uint64_t>(max, 1), via::request,
                    std::move(rp)};
  if (many && spec_.capacity == 0) {
    out_.receive_failed(from, op, r.rp,
                        make_error(errc::invalid_argument,
                                   "batch receives need capacity >= 1"));
  } else if (!buffer_.empty()) {
    serve(r);
    dispatch();
  } else if (auto i = spec_.capacity == 0 ? first_plain(sendq_)
                                           : sendq_.end();
             i != sendq_.end()) {
    auto s = std::move(*i);
    sendq_.erase(i);
    accept(s);
    auto copy = s.value;
    hand_over(r, std::move(copy), false, std::move(s));
  } else if (drained()) {
    out_.receive_failed(from, op, r.rp, closed_error());
  } else if (!may_park) {
    out_.receive_failed(from, op, r.rp, make_error(errc::would_block));
  } else {
    recvq_.push_back(std::move(r));
    dispatch(); // a select's send offer may be waiting for it
  }
}

void channel_state::take(uint64_t id) {
  auto i = leases_.find(id);
  if (i == leases_.end() || i->second.taken)
    return;
  auto& l = i->second;
  l.taken = true;
  if (l.sender) {
    answer(*l.sender, caf::error{});
    l.sender.reset();
  }
}

caf::error channel_state::settle(uint64_t id, bool requeue) {
  if (!end_lease(id, requeue))
    return make_error(errc::lease_settled,
                      "lease " + std::to_string(id) + " of channel '"
                        + spec_.name + "' was already committed or released");
  dispatch();
  return caf::none;
}

void channel_state::ack_many(const std::vector<uint64_t>& ids) {
  for (auto id : ids)
    end_lease(id, false);
  dispatch();
}

void channel_state::unread(const party_id& from,
                           const std::vector<uint64_t>& ids) {
  // Back to the head in their order, as if never fetched.
  for (auto i = ids.rbegin(); i != ids.rend(); ++i)
    if (auto l = leases_.find(*i);
        l != leases_.end() && l->second.holder == from)
      give_back(l, false);
  dispatch();
}

// -- waiting and closing ------------------------------------------------------

void channel_state::withdraw(const party_id& from, uint64_t op) {
  auto same = [&](auto& x) { return x.from == from && x.op == op; };
  if (auto i = std::find_if(sendq_.begin(), sendq_.end(), same);
      i != sendq_.end()) {
    // A select's losing case goes without a word (its selector moved on).
    if (i->how != via::offer) {
      ++stats_.returned;
      answer(*i, timeout_error());
    }
    sendq_.erase(i);
    dispatch();
    return;
  }
  if (auto i = std::find_if(recvq_.begin(), recvq_.end(), same);
      i != recvq_.end()) {
    if (i->how != via::offer)
      out_.receive_failed(from, op, i->rp, timeout_error());
    recvq_.erase(i);
    dispatch(); // a closed channel may now count as drained
    return;
  }
  // A capacity-0 value in flight to a receiver: delivered if taken; if it
  // comes back untaken, it returns to its sender instead of waiting again.
  for (auto& [id, l] : leases_)
    if (l.sender && same(*l.sender))
      l.sender_gave_up = timeout_error();
}

caf::error channel_state::close() {
  if (closed_)
    return closed_error("channel '" + spec_.name + "' is already closed");
  closed_ = true;
  for (auto& s : sendq_) {
    if (s.how == via::offer) {
      out_.offer_answer(s.from, s.op, offer_state::failed, closed_error());
    } else {
      ++stats_.returned;
      answer(s, closed_error());
    }
  }
  sendq_.clear();
  for (auto& [id, l] : leases_)
    if (l.sender)
      l.sender_gave_up = closed_error();
  // Credit granted before the close stays valid; waiting for more ends.
  for (auto& c : creditq_)
    out_.credit_failed(c.from, c.op, c.rp, closed_error());
  creditq_.clear();
  for (auto& [who, p] : parties_)
    set_streaming(p, false);
  // A send inside a claim has not happened yet: it fails like the others.
  std::vector<uint64_t> sending;
  for (auto& [id, c] : claims_)
    if (c.put)
      sending.push_back(id);
  for (auto id : sending)
    abandon_claim(id, party_id{}, closed_error());
  dispatch();
  return caf::none;
}

// -- credit -------------------------------------------------------------------

void channel_state::reserve(const party_id& from, uint64_t op, uint64_t want,
                            bool urgent, uint64_t sender_id, reply rp) {
  auto& p = watch(from);
  if (closed_) {
    out_.credit_failed(from, op, rp, closed_error());
    return;
  }
  if (spec_.capacity == 0) {
    out_.credit_failed(from, op, rp,
                       make_error(errc::invalid_argument,
                                  "a capacity-0 channel has no slots to "
                                  "reserve"));
    return;
  }
  if (want == 0) {
    out_.credited(from, op, rp, 0, last_seq_of(sender_id));
    return;
  }
  set_streaming(p, true);
  p.window = want;
  p.sender_id = sender_id;
  if (creditq_.empty() && free_slots() > 0) {
    out_.credited(from, op, rp, grant(from, want), last_seq_of(sender_id));
    return;
  }
  creditq_.push_back(
    waiting_credit{from, op, want, urgent, sender_id, std::move(rp)});
}

void channel_state::hurry(const party_id& from) {
  for (auto& c : creditq_)
    if (c.from == from)
      c.urgent = true;
  dispatch();
}

void channel_state::unreserve(const party_id& from, uint64_t n) {
  auto i = parties_.find(from);
  if (i == parties_.end())
    return;
  auto& p = i->second;
  set_streaming(p, false);
  n = std::min<uint64_t>(n, p.credit);
  p.credit -= n;
  reserved_ -= n;
  dispatch();
}

uint64_t channel_state::grant(const party_id& to, uint64_t want) {
  auto granted = std::min<uint64_t>(want, free_slots());
  parties_[to].credit += granted;
  reserved_ += granted;
  return granted;
}

// -- parties and links --------------------------------------------------------

void channel_state::down(const party_id& who, bool link_broke) {
  if (link_broke && spec_.resume_timeout.count() > 0
      && gone_nodes_.count(who.node()) == 0)
    suspend(who);
  else
    gone(who);
}

/// A party's link broke: keep what it holds for it (leases, waiting sends,
/// which may still be matched); drop what it will ask again for. Its credit
/// goes back to the channel, so that a sender that vanished does not block
/// the others; values it had sent on it, if they come after a resume, are
/// taken even above the capacity (they were sent while their slots were
/// free).
void channel_state::suspend(const party_id& who) {
  auto credit = drop_asks_of(who);
  auto generation = next_generation_++;
  parties_[who].suspended = party::suspension{
    generation, std::chrono::steady_clock::now(), credit};
  out_.expire_later(generation);
  report(link_event::kind::lost, who, 0, {});
  dispatch();
}

void channel_state::expire(uint64_t generation) {
  auto i = std::find_if(parties_.begin(), parties_.end(), [&](auto& kv) {
    return kv.second.suspended && kv.second.suspended->generation == generation;
  });
  if (i == parties_.end())
    return; // resumed meanwhile
  auto who = i->first;
  auto since = i->second.suspended->since;
  i->second.suspended.reset();
  i->second.reissued.clear();
  report(link_event::kind::expired, who, 0, since);
  gone(who);
}

resumed channel_state::resume(const party_id& from, uint64_t sender_id,
                              std::vector<uint64_t> ops) {
  resumed result;
  result.last_seq = last_seq_of(sender_id);
  auto i = parties_.find(from);
  if (i == parties_.end() || (!i->second.suspended && !i->second.watched))
    return result;
  auto& p = i->second;
  if (p.suspended) {
    // The credit it held comes back for the values it may send again; it
    // returns the rest at once.
    p.credit += p.suspended->credit;
    reserved_ += p.suspended->credit;
    report(link_event::kind::restored, from, ops.size(), p.suspended->since);
    p.suspended.reset();
  }
  watch(from);
  if (!ops.empty())
    p.reissued = std::set<uint64_t>(ops.begin(), ops.end());
  for (auto& [id, l] : leases_)
    if (l.holder == from)
      result.leases.push_back(id);
  result.known = true;
  result.reserved = p.credit;
  return result;
}

void channel_state::leave(const party_id& from) {
  if (auto i = parties_.find(from); i != parties_.end())
    i->second.suspended.reset();
  gone(from);
}

void channel_state::node_gone(const caf::node_id& node) {
  gone_nodes_.insert(node);
  std::vector<uint64_t> ending;
  for (auto& [who, p] : parties_)
    if (p.suspended && who.node() == node)
      ending.push_back(p.suspended->generation);
  for (auto g : ending)
    expire(g);
}

/// A party exited: its waiting operations go, its leases come back, its
/// credit returns.
void channel_state::gone(const party_id& who) {
  if (auto i = parties_.find(who); i != parties_.end())
    i->second.reissued.clear();
  drop_asks_of(who);
  sendq_.erase(std::remove_if(sendq_.begin(), sendq_.end(),
                              [&](auto& s) { return s.from == who; }),
               sendq_.end());
  for (auto i = leases_.begin(); i != leases_.end();) {
    auto next = std::next(i);
    if (i->second.holder == who)
      give_back(i);
    i = next;
  }
  forget_if_empty(who);
  dispatch();
}

party& channel_state::watch(const party_id& who) {
  auto& p = parties_[who];
  // After a broken link a remote party speaks through a new proxy: equal to
  // the old one as a key, but the old one is dead. One-way messages (grant)
  // go to the one it spoke through last.
  if (caf::actor_cast<caf::actor_control_block*>(p.addr)
      != caf::actor_cast<caf::actor_control_block*>(who))
    p.addr = who;
  if (!p.watched && who) {
    p.watched = true;
    out_.watch(who);
  }
  return p;
}

void channel_state::forget_if_empty(const party_id& who) {
  if (auto i = parties_.find(who); i != parties_.end() && i->second.empty())
    parties_.erase(i);
}

/// Stops watching `who` and drops what it waits for, which it would ask
/// again for if it came back (select cases, receives, credit requests);
/// takes back the credit it holds, and returns how much that was.
uint64_t channel_state::drop_asks_of(const party_id& who) {
  drop_offers_of(who);
  auto from_who = [&](auto& x) { return x.from == who; };
  recvq_.erase(std::remove_if(recvq_.begin(), recvq_.end(), from_who),
               recvq_.end());
  creditq_.erase(std::remove_if(creditq_.begin(), creditq_.end(), from_who),
                 creditq_.end());
  auto i = parties_.find(who);
  if (i == parties_.end())
    return 0;
  auto& p = i->second;
  p.watched = false;
  set_streaming(p, false);
  auto credit = p.credit;
  reserved_ -= credit;
  p.credit = 0;
  return credit;
}

/// A selector is gone (or its link broke: selects do not resume): its
/// offers go, and claims waiting for it are abandoned.
void channel_state::drop_offers_of(const party_id& who) {
  auto its_offer = [&](auto& x) { return x.how == via::offer && x.from == who; };
  sendq_.erase(std::remove_if(sendq_.begin(), sendq_.end(), its_offer),
               sendq_.end());
  recvq_.erase(std::remove_if(recvq_.begin(), recvq_.end(), its_offer),
               recvq_.end());
  std::vector<uint64_t> refused;
  for (auto& [id, c] : claims_)
    for (size_t k = 0; k < c.order_is_put.size(); ++k)
      if (c.selector(k) == who)
        refused.push_back(id);
  for (auto id : refused)
    abandon_claim(id, who);
}

void channel_state::set_streaming(party& p, bool on) {
  if (p.streaming == on)
    return;
  p.streaming = on;
  if (on)
    ++streaming_;
  else
    --streaming_;
}

void channel_state::report(link_event::kind what, const party_id& who,
                           uint64_t replayed,
                           std::chrono::steady_clock::time_point since) const {
  if (!spec_.links)
    return;
  link_event ev;
  ev.what = what;
  ev.owner_side = true;
  ev.peer = caf::to_string(who.node());
  ev.channel = spec_.name;
  ev.replayed = replayed;
  if (since != std::chrono::steady_clock::time_point{})
    ev.gap = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - since);
  spec_.links->report(ev);
}

// -- matching -----------------------------------------------------------------

/// Moves values to where they can go: buffered values to waiting
/// receivers, waiting senders into free slots or (capacity 0) to waiting
/// receivers, credit to those waiting for it; and wakes receivers of a
/// closed channel once nothing can arrive any more.
void channel_state::dispatch() {
  serve_receivers();
  if (spec_.capacity == 0)
    match_unbuffered();
  else
    fill_slots();
  serve_credit();
  if (creditq_.empty())
    top_up();
  wake_drained();
}

/// Buffered values to waiting receivers, in order; a select's receive case
/// gets a claim on its value.
void channel_state::serve_receivers() {
  while (!recvq_.empty() && !buffer_.empty()) {
    auto r = std::move(recvq_.front());
    recvq_.pop_front();
    if (r.how == via::request) {
      serve(r);
      continue;
    }
    claim c;
    c.get = std::move(r);
    c.value = pop_front();
    claimed_slots_ += c.value->counted ? 1 : 0;
    start_claim(std::move(c));
  }
}

/// Capacity N: waiting senders into free slots, in order; a select's send
/// case gets a claim on its slot.
void channel_state::fill_slots() {
  while (!sendq_.empty() && free_slots() > 0) {
    auto s = std::move(sendq_.front());
    sendq_.pop_front();
    if (s.how == via::offer) {
      claim c;
      c.put = std::move(s);
      c.holds_slot = true;
      ++claimed_slots_;
      start_claim(std::move(c));
      continue;
    }
    accept(s);
    answer(s, caf::error{});
    push(std::move(s.value), true);
    serve_receivers();
  }
}

/// Capacity 0: the first sender and the first receiver that may meet (a
/// select never meets itself), in order; a claim if either is a select's.
void channel_state::match_unbuffered() {
  for (;;) {
    auto s = sendq_.begin();
    auto r = recvq_.end();
    for (; s != sendq_.end(); ++s) {
      r = std::find_if(recvq_.begin(), recvq_.end(), [&](auto& x) {
        return s->how != via::offer || x.how != via::offer
               || x.from != s->from;
      });
      if (r != recvq_.end())
        break;
    }
    if (s == sendq_.end())
      return;
    auto put = std::move(*s);
    auto get = std::move(*r);
    sendq_.erase(s);
    recvq_.erase(r);
    if (put.how != via::offer && get.how != via::offer) {
      accept(put);
      auto copy = put.value;
      hand_over(get, std::move(copy), false, std::move(put));
      continue;
    }
    claim c;
    c.put = std::move(put);
    c.get = std::move(get);
    start_claim(std::move(c));
  }
}

/// Credit asked for ahead of need comes in chunks, not slot by slot as
/// receivers acknowledge: one grant per slot would make a streaming sender
/// pay a round trip per value. A blocked caller gets the first slot.
void channel_state::serve_credit() {
  while (first_credit_servable()) {
    auto c = std::move(creditq_.front());
    creditq_.pop_front();
    out_.credited(c.from, c.op, c.rp, grant(c.from, c.want),
                  last_seq_of(c.sender_id));
  }
}

/// Credit for streaming senders as slots free, a chunk at a time: their
/// next values are on the way while older ones are still received. Waiting
/// sends and credit requests are served first.
void channel_state::top_up() {
  auto streaming = closed_ ? 0 : streaming_;
  if (streaming == 0)
    return;
  auto share = std::max<uint64_t>(1, spec_.capacity / streaming);
  // Round robin: the first looked at is the one after the last topped up.
  auto at = parties_.upper_bound(last_topped_up_);
  for (size_t seen = 0; seen < streaming; ++at) {
    if (at == parties_.end())
      at = parties_.begin();
    auto& [to, p] = *at;
    if (!p.streaming)
      continue;
    ++seen;
    auto limit = std::min(p.window, share);
    auto room = p.credit < limit ? limit - p.credit : 0;
    auto n = std::min<uint64_t>(room, free_slots());
    if (n == 0 || n < std::min(credit_chunk(), limit))
      continue;
    last_topped_up_ = to;
    out_.grant(p.addr, grant(to, n), last_seq_of(p.sender_id));
  }
}

/// Closed, and nothing can arrive any more: every waiting receiver hears it.
void channel_state::wake_drained() {
  if (!drained())
    return;
  for (auto& r : recvq_) {
    if (r.how == via::offer)
      out_.offer_answer(r.from, r.op, offer_state::failed, closed_error());
    else
      out_.receive_failed(r.from, r.op, r.rp, closed_error());
  }
  recvq_.clear();
}

// -- values and leases --------------------------------------------------------

/// Leases `value` to `holder`; returns the copy to send, lease id inside.
envelope channel_state::lease_out(const party_id& holder, envelope value,
                                  bool counted,
                                  std::optional<waiting_send> sender) {
  auto id = next_lease_++;
  value.lease = id;
  auto copy = value;
  counted_leased_ += counted ? 1 : 0;
  leases_.emplace(id, lease{holder, std::move(value), counted, false,
                            std::move(sender), caf::error{}});
  return copy;
}

/// Hands `value` to the waiting receiver `r` as a new lease.
void channel_state::hand_over(waiting_receive& r, envelope value,
                              bool counted,
                              std::optional<waiting_send> sender) {
  auto copy = lease_out(r.from, std::move(value), counted, std::move(sender));
  if (r.many)
    out_.received_many(r.from, r.op, r.rp,
                       std::vector<envelope>{std::move(copy)});
  else
    out_.received(r.from, r.op, r.rp, std::move(copy));
  test_hook::reached("owner-handed");
}

/// Hands buffered values to `r`: one, or up to `r.max` for a batch.
void channel_state::serve(waiting_receive& r) {
  if (!r.many) {
    auto s = pop_front();
    hand_over(r, std::move(s.value), s.counted, std::nullopt);
    return;
  }
  std::vector<envelope> out;
  while (!buffer_.empty() && out.size() < r.max) {
    auto s = pop_front();
    out.push_back(lease_out(r.from, std::move(s.value), s.counted,
                            std::nullopt));
  }
  auto handed = out.size();
  out_.received_many(r.from, r.op, r.rp, std::move(out));
  for (size_t i = 0; i < handed; ++i)
    test_hook::reached("owner-handed");
}

bool channel_state::end_lease(uint64_t id, bool requeue) {
  auto i = leases_.find(id);
  if (i == leases_.end())
    return false;
  if (requeue) {
    give_back(i);
  } else {
    take(id);
    ++stats_.received;
    erase_lease(i);
  }
  return true;
}

/// Puts a leased value back: to its capacity-0 sender if it never reached
/// the receiver, else to the head of the queue, flagged redelivered unless
/// it is known never to have been delivered (`maybe_seen` false).
void channel_state::give_back(std::map<uint64_t, lease>::iterator i,
                              bool maybe_seen) {
  auto l = std::move(i->second);
  erase_lease(i);
  if (l.sender) {
    --stats_.sent;
    if (l.sender_gave_up || l.sender->is_try) {
      ++stats_.returned;
      answer(*l.sender, l.sender_gave_up ? l.sender_gave_up
                                         : make_error(errc::would_block));
    } else {
      l.sender->value.redelivered = maybe_seen || l.sender->value.redelivered;
      sendq_.push_front(std::move(*l.sender));
    }
    return;
  }
  if (maybe_seen) {
    ++stats_.requeued;
    l.value.redelivered = true;
  }
  push_front(std::move(l.value), l.counted);
}

void channel_state::erase_lease(std::map<uint64_t, lease>::iterator i) {
  counted_leased_ -= i->second.counted ? 1 : 0;
  leases_.erase(i);
}

void channel_state::push(envelope value, bool counted) {
  counted_buffered_ += counted ? 1 : 0;
  buffer_.push_back(slot{std::move(value), counted});
}

void channel_state::push_front(envelope value, bool counted) {
  counted_buffered_ += counted ? 1 : 0;
  buffer_.push_front(slot{std::move(value), counted});
}

slot channel_state::pop_front() {
  auto s = std::move(buffer_.front());
  buffer_.pop_front();
  counted_buffered_ -= s.counted ? 1 : 0;
  return s;
}

// -- sending helpers ----------------------------------------------------------

/// Checks a value; one sent on reserved credit passes a closed channel.
caf::error channel_state::admit(const envelope& value, bool reserved) const {
  if (closed_ && !reserved)
    return closed_error();
  if (value.bytes.size() > spec_.max_message_size)
    return make_error(errc::message_too_large,
                      "a value of " + std::to_string(value.bytes.size())
                        + " bytes was sent to channel '" + spec_.name
                        + "', above netchan.max-message-size = "
                        + std::to_string(spec_.max_message_size));
  return caf::none;
}

bool channel_state::is_duplicate(const envelope& value) const {
  return value.seq != 0 && value.seq <= last_seq_of(value.sender);
}

/// Records that a sender's value is now the channel's.
void channel_state::accept(const waiting_send& s) {
  ++stats_.sent;
  if (s.value.seq != 0)
    last_seq_[s.value.sender] = s.value.seq;
  test_hook::reached("owner-accepted");
}

/// The verdict of a send: to its request, or to its selector.
void channel_state::answer(waiting_send& s, caf::error err) {
  if (s.how == via::selector)
    out_.offer_done(s.from, s.op, std::move(err));
  else
    out_.sent(s.from, s.op, s.rp, std::move(err));
}

/// A put sent again after a resume that we still hold (waiting, in a claim,
/// or in flight to a receiver at capacity 0): its verdict now answers the
/// new request (`rp`).
bool channel_state::adopt(const party_id& from, uint64_t op, reply& rp) {
  auto same = [&](const waiting_send& s) {
    return s.from == from && s.op == op && s.how == via::request;
  };
  auto take_over = [&](waiting_send& s) {
    s.rp = std::move(rp);
    return true;
  };
  for (auto& s : sendq_)
    if (same(s))
      return take_over(s);
  for (auto& [id, c] : claims_)
    if (c.put && same(*c.put))
      return take_over(*c.put);
  for (auto& [id, l] : leases_)
    if (l.sender && same(*l.sender))
      return take_over(*l.sender);
  return false;
}

uint64_t channel_state::last_seq_of(uint64_t sender_id) const {
  auto i = last_seq_.find(sender_id);
  return i != last_seq_.end() ? i->second : 0;
}

// -- slots --------------------------------------------------------------------

size_t channel_state::used_slots() const {
  return counted_buffered_ + reserved_ + counted_leased_ + claimed_slots_;
}

size_t channel_state::free_slots() const {
  auto used = used_slots();
  return used < spec_.capacity ? spec_.capacity - used : 0;
}

uint64_t channel_state::credit_chunk() const {
  return std::max<uint64_t>(1, spec_.capacity / 4);
}

/// The first credit request can be granted: a blocked caller gets the first
/// free slot, a sender asking ahead a chunk (or all it wants).
bool channel_state::first_credit_servable() const {
  if (creditq_.empty())
    return false;
  auto& c = creditq_.front();
  return free_slots()
         >= (c.urgent ? 1 : std::min<uint64_t>(c.want, credit_chunk()));
}

/// Closed, and nothing can arrive any more: no value buffered, leased (it
/// could come back), claimed or announced by credit.
bool channel_state::drained() const {
  return closed_ && buffer_.empty() && leases_.empty() && reserved_ == 0
         && claims_.empty();
}

caf::error channel_state::closed_error(std::string sentence) const {
  if (sentence.empty())
    sentence = "channel '" + spec_.name + "' is closed";
  return make_error(errc::closed, std::move(sentence));
}

caf::error channel_state::timeout_error() const {
  return make_error(errc::timeout,
                    "the deadline passed while waiting on channel '"
                      + spec_.name + "'; the operation was withdrawn");
}

// -- queries ------------------------------------------------------------------

channel_stats channel_state::stats() const {
  auto result = stats_;
  result.buffered = buffer_.size();
  result.leased = leases_.size();
  result.reserved = reserved_;
  result.parked_senders = sendq_.size();
  result.parked_receivers = recvq_.size();
  result.parked_reserves = creditq_.size();
  result.capacity = spec_.capacity;
  return result;
}

std::string channel_state::invariant_violation() const {
  std::string off;
  auto expect = [&](const char* term, size_t counter, size_t counted) {
    if (counter != counted)
      off += std::string{term} + " is " + std::to_string(counter)
             + " but the queues hold " + std::to_string(counted) + "; ";
  };
  size_t buffered = 0;
  for (auto& s : buffer_)
    buffered += s.counted ? 1 : 0;
  size_t leased = 0;
  for (auto& [id, l] : leases_)
    leased += l.counted ? 1 : 0;
  uint64_t reserved = 0;
  bool suspended = false;
  for (auto& [who, p] : parties_) {
    reserved += p.credit;
    suspended = suspended || p.suspended.has_value();
  }
  size_t claimed = 0;
  for (auto& [id, c] : claims_)
    claimed += (c.holds_slot ? 1 : 0) + (c.value && c.value->counted ? 1 : 0);
  expect("counted_buffered", counted_buffered_, buffered);
  expect("counted_leased", counted_leased_, leased);
  expect("reserved", reserved_, reserved);
  expect("claimed_slots", claimed_slots_, claimed);
  expect("streaming", streaming_,
         static_cast<size_t>(std::count_if(
           parties_.begin(), parties_.end(),
           [](auto& kv) { return kv.second.streaming; })));
  // Values sent on credit that a party kept across a broken link may come
  // above the capacity; without suspended parties the slots add up.
  if (!suspended && used_slots() > spec_.capacity)
    off += std::to_string(used_slots()) + " slots used of "
           + std::to_string(spec_.capacity) + "; ";
  if (spec_.capacity == 0 && buffered + reserved + claimed > 0)
    off += "a capacity-0 channel holds counted slots; ";
  if (first_credit_servable())
    off += "a credit request waits beside free slots; ";
  if (!recvq_.empty() && !buffer_.empty())
    off += "a receiver waits beside a buffered value; ";
  auto plain = [](auto& x) { return x.how != via::offer; };
  if (spec_.capacity == 0 && std::any_of(sendq_.begin(), sendq_.end(), plain)
      && std::any_of(recvq_.begin(), recvq_.end(), plain))
    off += "a sender and a receiver wait for each other; ";
  for (auto& [id, c] : claims_)
    if (c.order_is_put.empty() || c.granted >= c.order_is_put.size())
      off += "claim " + std::to_string(id) + " asks nobody; ";
  return off;
}

void channel_state::shut_down() {
  // CAF 0.17 has no broken-promise error: answer everyone still waiting.
  auto gone = make_error(errc::peer_down, "channel '" + spec_.name
                                            + "' was shut down by its owner");
  for (auto& s : sendq_)
    if (s.how != via::offer)
      answer(s, gone);
  for (auto& r : recvq_)
    if (r.how != via::offer)
      out_.receive_failed(r.from, r.op, r.rp, gone);
  for (auto& [id, c] : claims_) {
    if (c.put && c.put->how != via::offer)
      answer(*c.put, gone);
    if (c.get && c.get->how != via::offer)
      out_.receive_failed(c.get->from, c.get->op, c.get->rp, gone);
  }
  for (auto& c : creditq_)
    out_.credit_failed(c.from, c.op, c.rp, gone);
  for (auto& [id, l] : leases_)
    if (l.sender)
      answer(*l.sender,
             make_error(errc::outcome_unknown,
                        "channel '" + spec_.name
                          + "' was shut down after a receiver was handed the "
                            "value and before it confirmed it: the value may "
                            "have been delivered"));
  sendq_.clear();
  recvq_.clear();
  claims_.clear();
  creditq_.clear();
  leases_.clear();
  counted_leased_ = 0;
  claimed_slots_ = 0;
}

} // namespace netchan::detail
