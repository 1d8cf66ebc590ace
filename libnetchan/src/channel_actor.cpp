// The channel actor: netchan's counterpart of the Go runtime's hchan
// (runtime/chan.go). One actor owns one channel: its buffer, its waiting
// senders and receivers, and the values handed out but not yet acknowledged.
//
// Invariant, restored by every handler before it returns:
//
//     counted buffered + reserved + counted leases <= capacity
//
// A value handed to a receiver stays *leased* until the receiver commits it;
// if the receiver dies or releases it first, it goes back to the head of the
// queue flagged `redelivered`. Capacity 0 has no slots: a send is matched
// with a receive directly, and the sender is released when the receiver has
// *taken* the value (two-phase hand-off), so a receiver that dies in between
// costs nothing: the sender is parked again at the head.
//
// A party whose link broke is not gone: its leases, its credit and its
// waiting sends are kept for it for netchan.resume-timeout (its waiting
// receives and credit requests are dropped: it asks again). If it comes back
// in time, it resumes (resume_atom) and settles what was in flight; if not,
// or if its node returns as a new process, it is treated as dead.

#include "channel_actor.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <set>
#include <optional>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "netchan/envelope.hpp"
#include "netchan/errc.hpp"
#include "netchan/link_event.hpp"
#include "netchan/stats.hpp"
#include "protocol.hpp"
#include "test_hook.hpp"

namespace netchan::detail {

namespace {

/// A sender waiting for a slot or a receiver.
struct parked_put {
  caf::actor_addr from;
  uint64_t op = 0;
  envelope value;
  caf::response_promise rp;
  bool is_try = false;
  /// A select's send case that won: its verdict goes to the selector as
  /// offer_done, not through `rp`.
  caf::actor selector;
};

/// A select's case waiting here, not committed yet: it completes only after
/// its selector grants a claim (select.cpp has the protocol).
struct offer {
  caf::actor selector;
  uint64_t op = 0;
  envelope value; // send cases

  caf::actor_addr addr() const {
    return caf::actor_cast<caf::actor_addr>(selector);
  }
};

/// A receiver waiting for a value, or for a batch of up to `max` values.
struct parked_get {
  caf::actor_addr from;
  uint64_t op = 0;
  caf::response_promise rp;
  bool many = false;
  uint64_t max = 1;
};

/// A sender endpoint waiting for credit (capacity N >= 1).
struct parked_reserve {
  caf::actor_addr from;
  uint64_t want = 0;
  caf::response_promise rp;
  bool urgent = false;
  uint64_t sender_id = 0;
};

/// A sender streaming on credit: the owner keeps its credit topped up to the
/// `window` it last asked for (its share of the capacity, if less).
struct streamer {
  uint64_t sender_id = 0;
  uint64_t window = 0;
};

/// A party whose link broke, waiting to resume.
struct suspended {
  uint64_t generation = 0;
  std::chrono::steady_clock::time_point since;
  /// Credit it held: values it sent on it may still come, after the resume.
  uint64_t credit = 0;
};

using expire_atom = caf::atom_constant<caf::atom("nc_expire")>;

/// A value in the buffer. `counted` is false only for a capacity-0 value
/// re-queued after its receiver died: it owes a delivery, not a slot.
struct slot {
  envelope value;
  bool counted = true;
};

/// A match that waits for the consent of its selectors: one offer with a
/// normal party, a value or a slot; or, at capacity 0, a send offer and a
/// receive offer of two selectors, claimed in one global order (by actor
/// address) so that two owners never wait on each other.
struct claim {
  std::optional<offer> put_offer;
  std::optional<offer> get_offer;
  std::optional<parked_put> put;
  std::optional<parked_get> get;
  /// A receive offer's value, taken from the buffer meanwhile.
  std::optional<slot> value;
  /// A send offer's slot, held meanwhile (capacity N).
  bool holds_slot = false;
  /// The offers to claim, in order (each the put or the get offer), and
  /// how many granted so far.
  std::vector<bool> order_is_put;
  size_t granted = 0;

  const offer& nth(size_t k) const {
    return order_is_put[k] ? *put_offer : *get_offer;
  }
};

/// A value handed to a receiver and not yet committed.
struct lease {
  caf::actor_addr holder;
  envelope value;
  bool counted = true;
  bool taken = false;
  /// Capacity 0: the sender, released when the receiver takes the value.
  std::optional<parked_put> sender;
  /// The sender withdrew (or was closed) while the value was in flight:
  /// if the value comes back, it goes back to the sender with this error.
  caf::error sender_gave_up;
};

class channel_actor : public caf::event_based_actor {
public:
  channel_actor(caf::actor_config& cfg, channel_spec spec)
    : caf::event_based_actor(cfg), spec_(std::move(spec)) {
    set_down_handler([this](caf::down_msg& msg) {
      if (msg.reason == caf::exit_reason::remote_link_unreachable
          && spec_.resume_timeout.count() > 0
          && gone_nodes_.count(msg.source.node()) == 0)
        suspend(msg.source);
      else
        on_down(msg.source);
    });
  }

  const char* name() const override {
    return "netchan.channel";
  }

  caf::behavior make_behavior() override {
    return {
      [this](put_atom, uint64_t op, envelope& value, uint8_t mode) {
        put(op, std::move(value), static_cast<put_mode>(mode));
      },
      [this](get_atom, uint64_t op, bool may_park) {
        auto from = who();
        get(parked_get{from, op, make_response_promise(), false, 1}, may_park);
      },
      [this](get_many_atom, uint64_t op, uint64_t max, bool may_park) {
        auto from = who();
        get(parked_get{from, op, make_response_promise(), true,
                       std::max<uint64_t>(max, 1)},
            may_park);
      },
      [this](put_batch_atom, std::vector<envelope>& values) {
        put_batch(values);
      },
      [this](ack_many_atom, const std::vector<uint64_t>& ids) {
        for (auto id : ids)
          end_lease(id, false);
        dispatch();
      },
      [this](take_atom, uint64_t id) { take(id); },
      [this](ack_atom, uint64_t id) { static_cast<void>(settle(id, false)); },
      [this](commit_atom, uint64_t id) -> caf::result<ok_atom> {
        return settle(id, false);
      },
      [this](release_atom, uint64_t id) -> caf::result<ok_atom> {
        return settle(id, true);
      },
      [this](withdraw_atom, uint64_t op) { withdraw(op); },
      [this](close_atom) -> caf::result<ok_atom> { return close(); },
      [this](len_atom) { return static_cast<uint64_t>(buffer_.size()); },
      [this](stats_atom) { return stats(); },
      [this](check_atom) { return invariant_violation(); },
      [this](reserve_atom, uint64_t want, bool urgent, uint64_t sender_id)
        -> caf::result<uint64_t, uint64_t> {
        return reserve(want, urgent, sender_id);
      },
      [this](hurry_atom) {
        auto from = who();
        for (auto& r : reserves_)
          if (r.from == from)
            r.urgent = true;
        dispatch();
      },
      [this](unread_atom, const std::vector<uint64_t>& ids) {
        // Back to the head in their order, as if never fetched.
        auto from = who();
        for (auto i = ids.rbegin(); i != ids.rend(); ++i)
          if (auto l = leases_.find(*i);
              l != leases_.end() && l->second.holder == from)
            give_back(l, false);
        dispatch();
      },
      [this](resume_atom, uint64_t sender_id, std::vector<uint64_t>& ops)
        -> caf::result<bool, uint64_t, uint64_t, std::vector<uint64_t>> {
        return resume(sender_id, std::move(ops));
      },
      [this](expire_atom, uint64_t generation) { expire(generation); },
      [this](leave_atom) {
        auto from = who();
        suspended_.erase(from);
        on_down(from);
      },
      [this](node_gone_atom, const caf::node_id& gone) {
        gone_nodes_.insert(gone);
        std::vector<uint64_t> ending;
        for (auto& [party, s] : suspended_)
          if (party.node() == gone)
            ending.push_back(s.generation);
        for (auto g : ending)
          expire(g);
      },
      [this](unreserve_atom, uint64_t n) { unreserve(n); },
      [this](offer_get_atom, uint64_t op, bool may_park) {
        offer_get(op, may_park);
      },
      [this](offer_put_atom, uint64_t op, envelope& value, bool may_park) {
        offer_put(op, std::move(value), may_park);
      },
      [this](claim_reply_atom, uint64_t id, bool granted) {
        claim_reply(id, granted);
      },
    };
  }

  void on_exit() override {
    // CAF 0.17 has no broken-promise error: answer everyone still waiting.
    auto gone = make_error(errc::peer_down, "channel '" + spec_.name
                                              + "' was shut down by its owner");
    for (auto& p : puts_)
      answer(p, gone);
    for (auto& g : gets_)
      g.rp.deliver(gone);
    for (auto& [id, c] : claims_) {
      if (c.put)
        answer(*c.put, gone);
      if (c.get)
        c.get->rp.deliver(gone);
    }
    claims_.clear();
    for (auto& r : reserves_)
      r.rp.deliver(gone);
    reserves_.clear();
    for (auto& [id, l] : leases_)
      if (l.sender)
        answer(*l.sender, make_error(
          errc::outcome_unknown,
          "channel '" + spec_.name
            + "' was shut down after a receiver was handed the value and "
              "before it confirmed it: the value may have been delivered"));
    puts_.clear();
    gets_.clear();
    leases_.clear();
    counted_leased_ = 0;
  }

private:
  // -- operations (one per message, as in runtime/chan.go) -------------------

  void put(uint64_t op, envelope value, put_mode mode) {
    // make_response_promise() takes the sender out of the current message.
    auto from = who();
    auto rp = make_response_promise();
    watch(from);
    if (auto r = reissued_.find(from);
        r != reissued_.end() && r->second.erase(op) != 0) {
      // Sent again after a resume: if we hold it still, its verdict goes to
      // the new link; if we accepted it meanwhile, it is done.
      if (r->second.empty())
        reissued_.erase(r);
      if (adopt(from, op, rp))
        return;
      if (is_duplicate(value)) {
        rp.deliver(ok_atom::value);
        return;
      }
    }
    if (auto err = admit(value, mode == put_mode::reserved)) {
      ++stats_.returned;
      rp.deliver(std::move(err));
      return;
    }
    if (mode == put_mode::reserved) {
      auto i = reservations_.find(from);
      if (i == reservations_.end() || i->second == 0) {
        rp.deliver(make_error(errc::invalid_argument,
                              "a reserved send arrived without credit"));
        return;
      }
      --i->second;
      --reserved_;
    }
    if (is_duplicate(value)) {
      ++stats_.duplicates;
      rp.deliver(ok_atom::value);
      return;
    }
    parked_put p{from, op, std::move(value), std::move(rp),
                 mode == put_mode::try_once, caf::actor{}};
    if (mode == put_mode::reserved) {
      // The slot was ours already: it moves from reserved to buffered.
      accept(p);
      push(std::move(p.value), true);
      p.rp.deliver(ok_atom::value);
    } else if (spec_.capacity == 0 && !gets_.empty()) {
      accept(p);
      auto value = p.value; // the sender keeps its copy until taken
      hand_over(pop_get(), std::move(value), false, std::move(p));
    } else if (spec_.capacity > 0 && free_slots() > 0) {
      accept(p);
      push(std::move(p.value), true);
      p.rp.deliver(ok_atom::value);
    } else if (p.is_try) {
      p.rp.deliver(make_error(errc::would_block));
    } else {
      puts_.emplace_back(std::move(p));
    }
    dispatch();
  }

  void get(parked_get g, bool may_park) {
    watch(g.from);
    if (g.many && spec_.capacity == 0) {
      g.rp.deliver(make_error(errc::invalid_argument,
                              "batch receives need capacity >= 1"));
    } else if (!buffer_.empty()) {
      serve(std::move(g));
      dispatch();
    } else if (spec_.capacity == 0 && !puts_.empty()) {
      auto p = std::move(puts_.front());
      puts_.pop_front();
      accept(p);
      auto value = p.value;
      hand_over(std::move(g), std::move(value), false, std::move(p));
    } else if (drained()) {
      g.rp.deliver(closed_error());
    } else if (!may_park) {
      g.rp.deliver(make_error(errc::would_block));
    } else {
      gets_.emplace_back(std::move(g));
      dispatch(); // a select's send offer may be waiting for it
    }
  }

  /// The receiver has the value: a capacity-0 sender is released now, in the
  /// same step that records the hand-off.
  void take(uint64_t id) {
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

  /// Ends a lease: committed (done with) or released (re-queued).
  caf::result<ok_atom> settle(uint64_t id, bool requeue) {
    if (!end_lease(id, requeue))
      return make_error(errc::lease_settled,
                        "lease " + std::to_string(id) + " of channel '"
                          + spec_.name + "' was already committed or released");
    dispatch();
    return ok_atom::value;
  }

  bool end_lease(uint64_t id, bool requeue) {
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

  /// Values sent on credit: each uses one slot its sender reserved, so it is
  /// accepted even if the channel was closed after the credit was granted
  /// (that send happened before the close).
  void put_batch(std::vector<envelope>& values) {
    auto from = who();
    watch(from);
    auto r = reservations_.find(from);
    for (auto& v : values) {
      caf::error err;
      if (r == reservations_.end() || r->second == 0) {
        err = make_error(errc::invalid_argument,
                         "a value arrived without credit");
      } else {
        // The slot is used up either way: the sender counted it as spent.
        --r->second;
        --reserved_;
        err = admit(v, true);
      }
      if (err) {
        // The sender's edge checks type and size with our limits, so this
        // is a protocol violation: refuse loudly, to the sender.
        ++stats_.returned;
        send(caf::actor_cast<caf::actor>(from), refused_atom::value, v.seq,
             std::move(err));
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

  /// Cancels a parked operation of the current sender. The verdict goes to
  /// the original request: withdrawn (timeout) if it was still waiting;
  /// nothing if it already completed.
  void withdraw(uint64_t op) {
    auto from = who();
    // A select's losing case: gone without a word (its selector moved on).
    for (auto* q : {&offer_puts_, &offer_gets_})
      for (auto i = q->begin(); i != q->end(); ++i)
        if (i->addr() == from && i->op == op) {
          q->erase(i);
          dispatch();
          return;
        }
    for (auto i = puts_.begin(); i != puts_.end(); ++i)
      if (i->from == from && i->op == op) {
        ++stats_.returned;
        answer(*i, timeout_error());
        puts_.erase(i);
        dispatch();
        return;
      }
    for (auto i = gets_.begin(); i != gets_.end(); ++i)
      if (i->from == from && i->op == op) {
        i->rp.deliver(timeout_error());
        gets_.erase(i);
        dispatch(); // a closed channel may now count as drained
        return;
      }
    // A capacity-0 value in flight to a receiver: delivered if taken; if it
    // comes back untaken, it returns to its sender instead of waiting again.
    for (auto& [id, l] : leases_)
      if (l.sender && l.sender->from == from && l.sender->op == op)
        l.sender_gave_up = timeout_error();
  }

  caf::result<ok_atom> close() {
    if (closed_)
      return closed_error("channel '" + spec_.name + "' is already closed");
    closed_ = true;
    for (auto& p : puts_) {
      ++stats_.returned;
      answer(p, closed_error());
    }
    puts_.clear();
    for (auto& o : offer_puts_)
      send(o.selector, offer_state_atom::value, o.op,
           static_cast<uint8_t>(offer_state::failed), closed_error());
    offer_puts_.clear();
    for (auto& [id, l] : leases_)
      if (l.sender)
        l.sender_gave_up = closed_error();
    // Credit granted before the close stays valid; waiting for more ends.
    for (auto& r : reserves_)
      r.rp.deliver(closed_error());
    reserves_.clear();
    streaming_.clear();
    // A send inside a claim has not happened yet: it fails like the others.
    std::vector<uint64_t> sending;
    for (auto& [id, c] : claims_)
      if (c.put_offer || c.put)
        sending.push_back(id);
    for (auto id : sending)
      abandon_claim(id, caf::actor_addr{}, closed_error());
    dispatch();
    return ok_atom::value;
  }

  /// Credit: reserves up to `want` free slots for the sender, waiting until
  /// at least one is free. The answer also says which of its values arrived.
  caf::result<uint64_t, uint64_t> reserve(uint64_t want, bool urgent,
                                          uint64_t sender_id) {
    auto from = who();
    watch(from);
    if (closed_)
      return closed_error();
    if (spec_.capacity == 0)
      return make_error(errc::invalid_argument,
                        "a capacity-0 channel has no slots to reserve");
    if (want == 0)
      return {uint64_t{0}, last_seq_of(sender_id)};
    streaming_[from] = streamer{sender_id, want};
    if (reserves_.empty() && free_slots() > 0)
      return {grant(from, want), last_seq_of(sender_id)};
    auto rp = make_response_promise();
    reserves_.push_back(
      parked_reserve{from, want, std::move(rp), urgent, sender_id});
    return caf::delegated<uint64_t, uint64_t>{};
  }

  uint64_t last_seq_of(uint64_t sender_id) const {
    auto i = last_seq_.find(sender_id);
    return i != last_seq_.end() ? i->second : 0;
  }

  // -- broken links ----------------------------------------------------------

  /// A party's link broke: keep what it holds for it (leases, waiting sends,
  /// which may still be matched); drop what it will ask again for (waiting
  /// receives and credit requests) and its select cases. Its credit goes
  /// back to the channel, so that a sender that vanished does not block the
  /// others; values it had sent on it, if they come after a resume, are
  /// taken even above the capacity (they were sent while their slots were
  /// free).
  void suspend(const caf::actor_addr& party) {
    auto credit = drop_asks_of(party);
    auto generation = next_generation_++;
    suspended_[party] = suspended{generation, std::chrono::steady_clock::now(),
                                  credit};
    delayed_send(this, spec_.resume_timeout, expire_atom::value, generation);
    report(link_event::kind::lost, party, 0, {});
    dispatch();
  }

  /// The window passed (or the party's node came back as a new process):
  /// the party is gone.
  void expire(uint64_t generation) {
    auto i = std::find_if(suspended_.begin(), suspended_.end(),
                          [&](auto& kv) {
                            return kv.second.generation == generation;
                          });
    if (i == suspended_.end())
      return; // resumed meanwhile
    auto party = i->first;
    auto since = i->second.since;
    suspended_.erase(i);
    reissued_.erase(party);
    report(link_event::kind::expired, party, 0, since);
    on_down(party);
  }

  /// A party whose link broke is back: tell it what we hold for it.
  caf::result<bool, uint64_t, uint64_t, std::vector<uint64_t>>
  resume(uint64_t sender_id, std::vector<uint64_t> ops) {
    auto from = who();
    auto last = last_seq_of(sender_id);
    auto i = suspended_.find(from);
    if (i == suspended_.end() && watched_.count(from) == 0)
      return {false, last, uint64_t{0}, std::vector<uint64_t>{}};
    if (i != suspended_.end()) {
      // The credit it held comes back for the values it may send again; it
      // returns the rest at once.
      if (i->second.credit > 0) {
        reservations_[from] += i->second.credit;
        reserved_ += i->second.credit;
      }
      report(link_event::kind::restored, from, ops.size(), i->second.since);
      suspended_.erase(i);
    }
    watch(from);
    if (!ops.empty())
      reissued_[from] = std::set<uint64_t>(ops.begin(), ops.end());
    std::vector<uint64_t> held;
    for (auto& [id, l] : leases_)
      if (l.holder == from)
        held.push_back(id);
    auto r = reservations_.find(from);
    uint64_t reserved = r != reservations_.end() ? r->second : 0;
    return {true, last, reserved, std::move(held)};
  }

  /// A put sent again after a resume that we still hold (waiting, in a
  /// claim, or in flight to a receiver at capacity 0): its verdict now goes
  /// to `rp`.
  bool adopt(const caf::actor_addr& from, uint64_t op,
             caf::response_promise& rp) {
    auto same = [&](const parked_put& p) {
      return p.from == from && p.op == op && !p.selector;
    };
    for (auto& p : puts_)
      if (same(p)) {
        p.rp = std::move(rp);
        return true;
      }
    for (auto& [id, c] : claims_)
      if (c.put && same(*c.put)) {
        c.put->rp = std::move(rp);
        return true;
      }
    for (auto& [id, l] : leases_)
      if (l.sender && same(*l.sender)) {
        l.sender->rp = std::move(rp);
        return true;
      }
    return false;
  }

  void report(link_event::kind what, const caf::actor_addr& party,
              uint64_t replayed,
              std::chrono::steady_clock::time_point since) {
    if (!spec_.links)
      return;
    link_event ev;
    ev.what = what;
    ev.owner_side = true;
    ev.peer = caf::to_string(party.node());
    ev.channel = spec_.name;
    ev.replayed = replayed;
    if (since != std::chrono::steady_clock::time_point{})
      ev.gap = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - since);
    spec_.links->report(ev);
  }

  uint64_t grant(const caf::actor_addr& to, uint64_t want) {
    auto granted = std::min<uint64_t>(want, free_slots());
    reservations_[to] += granted;
    reserved_ += granted;
    return granted;
  }

  /// Credit for streaming senders as slots free, a chunk at a time: their
  /// next values are on the way while older ones are still received. Waiting
  /// sends and credit requests are served first.
  void top_up() {
    if (streaming_.empty() || closed_)
      return;
    auto share = std::max<uint64_t>(1, spec_.capacity / streaming_.size());
    // Round robin: the first looked at is the one after the last topped up.
    auto start = streaming_.upper_bound(last_topped_up_);
    for (size_t k = 0; k < streaming_.size(); ++k, ++start) {
      if (start == streaming_.end())
        start = streaming_.begin();
      auto& [to, s] = *start;
      auto limit = std::min(s.window, share);
      auto i = reservations_.find(to);
      auto held = i != reservations_.end() ? i->second : 0;
      auto room = held < limit ? limit - held : 0;
      auto n = std::min<uint64_t>(room, free_slots());
      if (n == 0 || n < std::min(credit_chunk(), limit))
        continue;
      last_topped_up_ = to;
      send(caf::actor_cast<caf::actor>(to), grant_atom::value, grant(to, n),
           last_seq_of(s.sender_id));
    }
  }

  void unreserve(uint64_t n) {
    streaming_.erase(who());
    auto i = reservations_.find(who());
    if (i == reservations_.end())
      return;
    n = std::min<uint64_t>(n, i->second);
    i->second -= n;
    reserved_ -= n;
    dispatch();
  }

  channel_stats stats() const {
    auto result = stats_;
    result.buffered = buffer_.size();
    result.leased = leases_.size();
    result.reserved = reserved_;
    result.parked_senders = puts_.size() + offer_puts_.size();
    result.parked_receivers = gets_.size() + offer_gets_.size();
    result.parked_reserves = reserves_.size();
    result.capacity = spec_.capacity;
    return result;
  }

  /// Recounts every term of the invariant from the queues themselves;
  /// empty if the counters agree and the slots add up.
  std::string invariant_violation() const {
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
    for (auto& [party, n] : reservations_)
      reserved += n;
    size_t claimed = 0;
    for (auto& [id, c] : claims_)
      claimed += (c.holds_slot ? 1 : 0) + (c.value && c.value->counted ? 1 : 0);
    expect("counted_buffered", counted_buffered_, buffered);
    expect("counted_leased", counted_leased_, leased);
    expect("reserved", reserved_, reserved);
    expect("claimed_slots", claimed_slots_, claimed);
    // Values sent on credit that a party kept across a broken link may come
    // above the capacity; without suspended parties the slots add up.
    if (suspended_.empty() && used_slots() > spec_.capacity)
      off += std::to_string(used_slots()) + " slots used of "
             + std::to_string(spec_.capacity) + "; ";
    if (spec_.capacity == 0 && buffered + reserved + claimed > 0)
      off += "a capacity-0 channel holds counted slots; ";
    if (first_reserve_servable())
      off += "a credit request waits beside free slots; ";
    if (!gets_.empty() && !buffer_.empty())
      off += "a receiver waits beside a buffered value; ";
    if (spec_.capacity == 0 && !gets_.empty() && !puts_.empty())
      off += "a sender and a receiver wait for each other; ";
    return off;
  }

  // -- helpers ---------------------------------------------------------------

  /// Leases `value` to `holder`; returns the copy to send, lease id inside.
  envelope lease_out(const caf::actor_addr& holder, envelope value,
                     bool counted, std::optional<parked_put> sender) {
    auto id = next_lease_++;
    value.lease = id;
    auto copy = value;
    counted_leased_ += counted ? 1 : 0;
    leases_.emplace(id, lease{holder, std::move(value), counted, false,
                              std::move(sender), caf::error{}});
    return copy;
  }

  /// Hands `value` to the waiting receiver `g` as a new lease.
  void hand_over(parked_get g, envelope value, bool counted,
                 std::optional<parked_put> sender) {
    auto copy = lease_out(g.from, std::move(value), counted, std::move(sender));
    if (g.many)
      g.rp.deliver(std::vector<envelope>{std::move(copy)});
    else
      g.rp.deliver(copy.lease, std::move(copy));
    test_hook::reached("owner-handed");
  }

  /// Hands buffered values to `g`: one, or up to `g.max` for a batch.
  void serve(parked_get g) {
    if (!g.many) {
      auto s = pop_front();
      hand_over(std::move(g), std::move(s.value), s.counted, std::nullopt);
      return;
    }
    std::vector<envelope> out;
    while (!buffer_.empty() && out.size() < g.max) {
      auto s = pop_front();
      out.push_back(lease_out(g.from, std::move(s.value), s.counted,
                              std::nullopt));
    }
    auto handed = out.size();
    g.rp.deliver(std::move(out));
    for (size_t i = 0; i < handed; ++i)
      test_hook::reached("owner-handed");
  }

  /// Closed, and nothing can arrive any more: no value buffered, leased
  /// (it could come back) or announced by credit.
  bool drained() const {
    return closed_ && buffer_.empty() && leases_.empty() && reserved_ == 0
           && claims_.empty();
  }

  /// Moves values to where they can go: buffered values to waiting
  /// receivers, waiting senders into free slots; and wakes receivers of a
  /// closed channel once nothing can arrive any more.
  void dispatch() {
    while (!gets_.empty() && !buffer_.empty())
      serve(pop_get());
    if (spec_.capacity == 0) {
      while (!gets_.empty() && !puts_.empty()) {
        auto p = std::move(puts_.front());
        puts_.pop_front();
        accept(p);
        auto value = p.value;
        hand_over(pop_get(), std::move(value), false, std::move(p));
      }
    } else {
      while (!puts_.empty() && free_slots() > 0) {
        auto p = std::move(puts_.front());
        puts_.pop_front();
        accept(p);
        p.rp.deliver(ok_atom::value);
        if (!gets_.empty())
          hand_over(pop_get(), std::move(p.value), true, std::nullopt);
        else
          push(std::move(p.value), true);
      }
    }
    match_offers();
    // Credit asked for ahead of need comes in chunks, not slot by slot as
    // receivers acknowledge: one grant per slot would make a streaming
    // sender pay a round trip per value. A chunk is a quarter of the
    // capacity, or all it asked for. A blocked caller gets the first slot.
    while (first_reserve_servable()) {
      auto r = std::move(reserves_.front());
      reserves_.pop_front();
      r.rp.deliver(grant(r.from, r.want), last_seq_of(r.sender_id));
    }
    if (reserves_.empty())
      top_up();
    if (drained()) {
      for (auto& g : gets_)
        g.rp.deliver(closed_error());
      gets_.clear();
      for (auto& o : offer_gets_)
        send(o.selector, offer_state_atom::value, o.op,
             static_cast<uint8_t>(offer_state::failed), closed_error());
      offer_gets_.clear();
    }
  }

  /// Puts a leased value back: to its capacity-0 sender if it never reached
  /// the receiver, else to the head of the queue, flagged redelivered unless
  /// it is known never to have been delivered (`maybe_seen` false).
  void give_back(std::map<uint64_t, lease>::iterator i, bool maybe_seen = true) {
    auto l = std::move(i->second);
    erase_lease(i);
    if (l.sender) {
      if (l.sender_gave_up || l.sender->is_try) {
        ++stats_.returned;
        --stats_.sent;
        answer(*l.sender, l.sender_gave_up ? l.sender_gave_up
                                           : make_error(errc::would_block));
      } else {
        --stats_.sent;
        l.sender->value.redelivered = maybe_seen || l.sender->value.redelivered;
        puts_.emplace_front(std::move(*l.sender));
      }
      return;
    }
    if (maybe_seen) {
      ++stats_.requeued;
      l.value.redelivered = true;
    }
    push_front(std::move(l.value), l.counted);
  }

  /// A party we talk to exited: its parked operations go, its leases come
  /// back, its credit returns.
  void on_down(const caf::actor_addr& gone) {
    reissued_.erase(gone);
    drop_asks_of(gone);
    puts_.erase(std::remove_if(puts_.begin(), puts_.end(),
                               [&](auto& p) { return p.from == gone; }),
                puts_.end());
    for (auto i = leases_.begin(); i != leases_.end();) {
      auto next = std::next(i);
      if (i->second.holder == gone)
        give_back(i);
      i = next;
    }
    dispatch();
  }

  /// Stops watching `party` and drops what it waits for, which it would ask
  /// again for if it came back (select cases, receives, credit requests);
  /// takes back the credit it holds, and returns how much that was.
  uint64_t drop_asks_of(const caf::actor_addr& party) {
    watched_.erase(party);
    drop_offers_of(party);
    auto from_party = [&](auto& x) { return x.from == party; };
    gets_.erase(std::remove_if(gets_.begin(), gets_.end(), from_party),
                gets_.end());
    reserves_.erase(std::remove_if(reserves_.begin(), reserves_.end(),
                                   from_party),
                    reserves_.end());
    streaming_.erase(party);
    uint64_t credit = 0;
    if (auto r = reservations_.find(party); r != reservations_.end()) {
      credit = r->second;
      reserved_ -= r->second;
      reservations_.erase(r);
    }
    return credit;
  }

  /// A selector is gone (or its link broke: selects do not resume): its
  /// offers go, and claims waiting for it are abandoned.
  void drop_offers_of(const caf::actor_addr& gone) {
    for (auto* q : {&offer_puts_, &offer_gets_})
      q->erase(std::remove_if(q->begin(), q->end(),
                              [&](const offer& o) { return o.addr() == gone; }),
               q->end());
    std::vector<uint64_t> refused;
    for (auto& [id, c] : claims_)
      for (size_t k = 0; k < c.order_is_put.size(); ++k)
        if (c.nth(k).addr() == gone)
          refused.push_back(id);
    for (auto id : refused)
      abandon_claim(id, gone);
  }

  /// Checks a value; one sent on reserved credit passes a closed channel.
  caf::error admit(const envelope& value, bool reserved = false) const {
    if (closed_ && !reserved)
      return closed_error();
    if (value.type_name != spec_.type_name)
      return make_error(errc::type_mismatch,
                        "channel '" + spec_.name + "' carries "
                          + spec_.type_name + ", but a value of type "
                          + value.type_name + " was sent to it");
    if (value.payload.size() > spec_.max_message_size)
      return make_error(errc::message_too_large,
                        "a value of " + std::to_string(value.payload.size())
                          + " bytes was sent to channel '" + spec_.name
                          + "', above netchan.max-message-size = "
                          + std::to_string(spec_.max_message_size));
    return caf::none;
  }

  bool is_duplicate(const envelope& value) const {
    return value.seq != 0 && value.seq <= last_seq_of(value.sender);
  }

  /// Records that a sender's value is now the channel's.
  void accept(const parked_put& p) {
    ++stats_.sent;
    if (p.value.seq != 0)
      last_seq_[p.value.sender] = p.value.seq;
    test_hook::reached("owner-accepted");
  }

  void push(envelope value, bool counted) {
    counted_buffered_ += counted ? 1 : 0;
    buffer_.push_back(slot{std::move(value), counted});
  }

  /// Puts a value back at the head of the queue.
  void push_front(envelope value, bool counted) {
    counted_buffered_ += counted ? 1 : 0;
    buffer_.push_front(slot{std::move(value), counted});
  }

  slot pop_front() {
    auto s = std::move(buffer_.front());
    buffer_.pop_front();
    counted_buffered_ -= s.counted ? 1 : 0;
    return s;
  }

  void erase_lease(std::map<uint64_t, lease>::iterator i) {
    counted_leased_ -= i->second.counted ? 1 : 0;
    leases_.erase(i);
  }

  parked_get pop_get() {
    auto g = std::move(gets_.front());
    gets_.pop_front();
    return g;
  }

  size_t used_slots() const {
    return counted_buffered_ + reserved_ + counted_leased_ + claimed_slots_;
  }

  /// The first credit request can be granted: a blocked caller gets the
  /// first free slot, a sender asking ahead a chunk (or all it wants).
  bool first_reserve_servable() const {
    if (reserves_.empty())
      return false;
    auto& r = reserves_.front();
    return free_slots()
           >= (r.urgent ? 1 : std::min<uint64_t>(r.want, credit_chunk()));
  }

  uint64_t credit_chunk() const {
    return std::max<uint64_t>(1, spec_.capacity / 4);
  }

  size_t free_slots() const {
    auto used = used_slots();
    return used < spec_.capacity ? spec_.capacity - used : 0;
  }

  /// The party that sent the message being handled.
  caf::actor_addr who() {
    return caf::actor_cast<caf::actor_addr>(current_sender());
  }

  void watch(const caf::actor_addr& party) {
    if (party && watched_.insert(party).second)
      monitor(party);
  }

  caf::error closed_error(std::string sentence = {}) const {
    if (sentence.empty())
      sentence = "channel '" + spec_.name + "' is closed";
    return make_error(errc::closed, std::move(sentence));
  }

  caf::error timeout_error() const {
    return make_error(errc::timeout,
                      "the deadline passed while waiting on channel '"
                        + spec_.name + "'; the operation was withdrawn");
  }

  // -- select: offers and claims (the protocol is in select.cpp) ---------------

  /// The verdict of a put: to its caller, or to its selector.
  void answer(parked_put& p, caf::error err) {
    if (p.selector)
      send(p.selector, offer_done_atom::value, p.op, std::move(err));
    else if (err)
      p.rp.deliver(std::move(err));
    else
      p.rp.deliver(ok_atom::value);
  }

  void offer_get(uint64_t op, bool may_park) {
    auto sel = caf::actor_cast<caf::actor>(current_sender());
    watch(caf::actor_cast<caf::actor_addr>(sel));
    if (drained()) {
      send(sel, offer_state_atom::value, op,
           static_cast<uint8_t>(offer_state::failed), closed_error());
      return;
    }
    offer_gets_.push_back(offer{sel, op, {}});
    first_answer(offer_gets_, sel, op, may_park);
  }

  void offer_put(uint64_t op, envelope value, bool may_park) {
    auto sel = caf::actor_cast<caf::actor>(current_sender());
    watch(caf::actor_cast<caf::actor_addr>(sel));
    if (auto err = admit(value)) {
      ++stats_.returned;
      send(sel, offer_state_atom::value, op,
           static_cast<uint8_t>(offer_state::failed), std::move(err));
      return;
    }
    value.seq = 0; // a select's value is not in its sender's sequence
    offer_puts_.push_back(offer{sel, op, std::move(value)});
    first_answer(offer_puts_, sel, op, may_park);
  }

  /// A new offer's first answer: a claim if it can complete now (sent by
  /// dispatch), else parked, or would_block for a select with a default.
  void first_answer(std::deque<offer>& q, const caf::actor& sel, uint64_t op,
                    bool may_park) {
    dispatch();
    auto i = std::find_if(q.begin(), q.end(), [&](const offer& o) {
      return o.selector == sel && o.op == op;
    });
    if (i == q.end()) {
      // Claimed: the claim is the answer if it went to this selector. If
      // another selector is asked first, this one hears "parked" now: it
      // must not wait for this case before answering claims, or two
      // selectors could wait for each other.
      for (auto& [id, c] : claims_)
        for (size_t k = c.granted + 1; k < c.order_is_put.size(); ++k)
          if (c.nth(k).selector == sel && c.nth(k).op == op)
            send(sel, offer_state_atom::value, op,
                 static_cast<uint8_t>(offer_state::parked), caf::error{});
      return;
    }
    if (!may_park)
      q.erase(i);
    send(sel, offer_state_atom::value, op,
         static_cast<uint8_t>(may_park ? offer_state::parked
                                       : offer_state::would_block),
         caf::error{});
  }

  /// Starts claims for every offer that could complete now. Plain waiting
  /// senders and receivers go first.
  void match_offers() {
    while (!offer_gets_.empty() && !buffer_.empty() && gets_.empty()) {
      claim c;
      c.get_offer = pop(offer_gets_);
      c.value = pop_front();
      claimed_slots_ += c.value->counted ? 1 : 0;
      start_claim(std::move(c));
    }
    if (spec_.capacity > 0) {
      while (!offer_puts_.empty() && puts_.empty() && free_slots() > 0) {
        claim c;
        c.put_offer = pop(offer_puts_);
        c.holds_slot = true;
        ++claimed_slots_;
        start_claim(std::move(c));
      }
      return;
    }
    while (!offer_puts_.empty() && !gets_.empty()) {
      claim c;
      c.put_offer = pop(offer_puts_);
      c.get = pop_get();
      start_claim(std::move(c));
    }
    while (!offer_gets_.empty() && !puts_.empty()) {
      claim c;
      c.get_offer = pop(offer_gets_);
      c.put = std::move(puts_.front());
      puts_.pop_front();
      start_claim(std::move(c));
    }
    // Offer against offer: two selectors (a select never meets itself).
    for (auto p = offer_puts_.begin(); p != offer_puts_.end();) {
      auto g = std::find_if(offer_gets_.begin(), offer_gets_.end(),
                            [&](const offer& o) {
                              return o.selector != p->selector;
                            });
      if (g == offer_gets_.end()) {
        ++p;
        continue;
      }
      claim c;
      c.put_offer = std::move(*p);
      c.get_offer = std::move(*g);
      offer_gets_.erase(g);
      p = offer_puts_.erase(p);
      start_claim(std::move(c));
    }
  }

  static offer pop(std::deque<offer>& q) {
    auto o = std::move(q.front());
    q.pop_front();
    return o;
  }

  void start_claim(claim c) {
    auto id = next_claim_++;
    if (c.put_offer)
      c.order_is_put.push_back(true);
    if (c.get_offer)
      c.order_is_put.push_back(false);
    if (c.put_offer && c.get_offer && c.get_offer->addr() < c.put_offer->addr())
      c.order_is_put = {false, true};
    auto& stored = claims_.emplace(id, std::move(c)).first->second;
    ask(id, stored);
  }

  void ask(uint64_t id, const claim& c) {
    auto& o = c.nth(c.granted);
    send(o.selector, claim_atom::value, o.op, id);
  }

  void claim_reply(uint64_t id, bool granted) {
    auto i = claims_.find(id);
    if (i == claims_.end()) {
      // Abandoned while the selector's grant was on its way: it holds
      // every other claim until it hears the end of this one.
      if (granted)
        send(caf::actor_cast<caf::actor>(current_sender()),
             claim_end_atom::value, id, false);
      return;
    }
    if (!granted) {
      abandon_claim(id, who());
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
      send(done.nth(k).selector, claim_end_atom::value, id, true);
    commit(std::move(done));
  }

  /// Every selector of the match consented: the match happens.
  void commit(claim c) {
    if (c.get_offer && c.value) {
      claimed_slots_ -= c.value->counted ? 1 : 0;
      auto copy = lease_out(c.get_offer->addr(), std::move(c.value->value),
                            c.value->counted, std::nullopt);
      send(c.get_offer->selector, offer_value_atom::value, c.get_offer->op,
           std::move(copy));
      test_hook::reached("owner-handed");
    } else if (c.put_offer && c.holds_slot) {
      --claimed_slots_;
      auto& v = c.put_offer->value;
      ++stats_.sent;
      send(c.put_offer->selector, offer_done_atom::value, c.put_offer->op,
           caf::error{});
      push(std::move(v), true);
    } else {
      // Capacity 0: the sender is released when the receiver takes it.
      auto p = c.put ? std::move(*c.put)
                     : parked_put{c.put_offer->addr(), c.put_offer->op,
                                  std::move(c.put_offer->value),
                                  caf::response_promise{}, false,
                                  c.put_offer->selector};
      accept(p);
      auto value = p.value;
      if (c.get) {
        hand_over(std::move(*c.get), std::move(value), false, std::move(p));
      } else {
        auto copy = lease_out(c.get_offer->addr(), std::move(value), false,
                              std::move(p));
        send(c.get_offer->selector, offer_value_atom::value, c.get_offer->op,
             std::move(copy));
        test_hook::reached("owner-handed");
      }
    }
    dispatch();
  }

  /// A claim that will not complete: a selector refused it (it chose
  /// another case) or is gone (`refuser`), or the channel closed
  /// (`send_error`). Every selector it asked, but the refuser, hears that
  /// it ended: those that consented are free again, and the one asked last
  /// must not grant it later and then wait for its end. The refusing offer
  /// is dropped; a send fails with `send_error` if set; every other party
  /// goes back to the head of its queue.
  void abandon_claim(uint64_t id, const caf::actor_addr& refuser,
                     const caf::error& send_error = {}) {
    auto i = claims_.find(id);
    if (i == claims_.end())
      return;
    auto c = std::move(i->second);
    claims_.erase(i);
    for (size_t k = 0; k <= c.granted && k < c.order_is_put.size(); ++k)
      if (c.nth(k).addr() != refuser)
        send(c.nth(k).selector, claim_end_atom::value, id, false);
    if (c.put_offer && c.put_offer->addr() != refuser) {
      if (send_error)
        send(c.put_offer->selector, offer_state_atom::value,
             c.put_offer->op, static_cast<uint8_t>(offer_state::failed),
             send_error);
      else
        offer_puts_.push_front(std::move(*c.put_offer));
    }
    if (c.get_offer && c.get_offer->addr() != refuser)
      offer_gets_.push_front(std::move(*c.get_offer));
    if (c.put && send_error) {
      ++stats_.returned;
      answer(*c.put, send_error);
    } else if (c.put) {
      puts_.push_front(std::move(*c.put));
    }
    if (c.get)
      gets_.push_front(std::move(*c.get));
    if (c.value) {
      claimed_slots_ -= c.value->counted ? 1 : 0;
      push_front(std::move(c.value->value), c.value->counted);
    }
    if (c.holds_slot)
      --claimed_slots_;
    dispatch();
  }

  // -- state -----------------------------------------------------------------

  channel_spec spec_;
  bool closed_ = false;
  std::deque<offer> offer_puts_;
  std::deque<offer> offer_gets_;
  std::map<uint64_t, claim> claims_;
  uint64_t next_claim_ = 1;
  /// Slots held by claims: a receive offer's value, a send offer's slot.
  size_t claimed_slots_ = 0;
  std::deque<slot> buffer_;
  size_t counted_buffered_ = 0;
  size_t counted_leased_ = 0;
  std::deque<parked_put> puts_;
  std::deque<parked_get> gets_;
  std::deque<parked_reserve> reserves_;
  std::map<uint64_t, lease> leases_;
  uint64_t next_lease_ = 1;
  std::map<caf::actor_addr, uint64_t> reservations_;
  uint64_t reserved_ = 0;
  /// Senders streaming on credit: topped up unasked.
  std::map<caf::actor_addr, streamer> streaming_;
  caf::actor_addr last_topped_up_;
  std::unordered_map<uint64_t, uint64_t> last_seq_;
  std::set<caf::actor_addr> watched_;
  /// Parties whose link broke, waiting to resume.
  std::map<caf::actor_addr, suspended> suspended_;
  uint64_t next_generation_ = 1;
  /// Operations a resumed party said it sends again.
  std::map<caf::actor_addr, std::set<uint64_t>> reissued_;
  /// Nodes that came back as new processes: their sessions do not resume.
  std::set<caf::node_id> gone_nodes_;
  channel_stats stats_;
};

} // namespace

caf::actor spawn_channel(caf::actor_system& sys, channel_spec spec) {
  return sys.spawn<channel_actor>(std::move(spec));
}

} // namespace netchan::detail
