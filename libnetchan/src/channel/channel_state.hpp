#pragma once

// The channel itself: netchan's counterpart of the Go runtime's hchan
// (runtime/chan.go), as a plain class. No actor and no messaging: each
// operation is one function that changes the state and returns to the
// invariant; what must be said goes out through a channel_callee. The
// channel actor (channel_actor.cpp) is its shell, and tests drive it
// directly (tests/channel_state_test.cpp).
//
// Invariant, restored by every operation before it returns (and checked,
// term by term, by invariant_violation()):
//
//     counted buffered + reserved + counted leased + claimed <= capacity
//
// (unless a suspended party's credit sends arrive after its resume: they
// were sent while their slots were free and are taken above it), and
//     no receiver waits beside a buffered value,
//     at capacity 0 no plain sender waits beside a plain receiver,
//     no credit request waits beside the slots it needs.
//
// Values. A value handed to a receiver stays *leased* until the receiver
// commits it; if the receiver dies or releases it first, it goes back to
// the head of the queue flagged `redelivered`. Capacity 0 has no slots: a
// send is matched with a receive directly, and the sender is released when
// the receiver has *taken* the value (two-phase hand-off), so a receiver
// that dies in between costs nothing: the sender waits again at the head.
//
// Waiting. One send queue and one receive queue, in arrival order, as
// hchan's sendq and recvq. A select's case waits in them too (an offer):
// it completes only after its selector grants a claim (select/selector.cpp has the
// protocol), so when it comes up the channel sets aside what it needs (the
// value, the slot, the counterpart) in a claim and asks.
//
// Parties. Everything kept for one endpoint or selector is in its party
// record: watched or not, its credit, its streaming window, its suspension
// and the operations it said it re-issues. A party whose link broke is not
// gone: its leases, its credit and its waiting sends are kept for
// netchan.resume-timeout (its waiting receives, credit requests and select
// cases are dropped: it asks again). If it comes back in time, it resumes
// and settles what was in flight; if not, or if its node returns as a new
// process, it is treated as gone.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/error.hpp>
#include <caf/node_id.hpp>

#include "channel/callee.hpp"
#include "channel/channel_actor.hpp"
#include "netchan/envelope.hpp"
#include "netchan/stats.hpp"
#include "util/queue.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

/// How a waiting operation's verdict travels.
enum class via : uint8_t {
  /// A plain request: its verdict answers it.
  request,
  /// A select's case not committed yet: it needs a granted claim.
  offer,
  /// A select's send case that won: its verdict goes to the selector as
  /// offer_done.
  selector,
};

/// A sender waiting in the send queue (or inside a claim or a lease).
struct waiting_send {
  party_id from;
  uint64_t op = 0;
  envelope value;
  /// A try_send: never waits.
  bool is_try = false;
  via how = via::request;
  reply rp;
};

/// A receiver waiting in the receive queue (or inside a claim).
struct waiting_receive {
  party_id from;
  uint64_t op = 0;
  /// A get_many: up to `max` values at once.
  bool many = false;
  uint64_t max = 1;
  via how = via::request;
  reply rp;
};

/// A sender endpoint waiting for credit (capacity N >= 1).
struct waiting_credit {
  party_id from;
  uint64_t op = 0;
  uint64_t want = 0;
  /// A caller is blocked: the first free slot will do.
  bool urgent = false;
  uint64_t sender_id = 0;
  reply rp;
};

/// A value in the buffer. `counted` is false only for a capacity-0 value
/// re-queued after its receiver died: it owes a delivery, not a slot.
struct slot {
  envelope value;
  bool counted = true;
};

/// A value handed to a receiver and not yet committed.
struct lease {
  party_id holder;
  envelope value;
  bool counted = true;
  /// The receiver has it (take): a capacity-0 sender was released.
  bool taken = false;
  /// Capacity 0: the sender, released when the receiver takes the value.
  std::optional<waiting_send> sender;
  /// The sender withdrew (or was closed) while the value was in flight:
  /// if the value comes back, it goes back to the sender with this error.
  caf::error sender_gave_up;
};

/// A match waiting for the consent of its selectors: an offer with a plain
/// party, a value or a slot; or, at capacity 0, a send offer and a receive
/// offer of two selectors, asked one after the other in one global order
/// (by actor address), so that two owners never wait on each other.
struct claim {
  std::optional<waiting_send> put;
  std::optional<waiting_receive> get;
  /// A receive offer's value, taken from the buffer meanwhile.
  std::optional<slot> value;
  /// A send offer's slot, held meanwhile (capacity N).
  bool holds_slot = false;
  /// The offers to ask, in order (each the put or the get), and how many
  /// consented so far.
  std::vector<bool> order_is_put;
  size_t granted = 0;

  const party_id& selector(size_t k) const {
    return order_is_put[k] ? put->from : get->from;
  }
  uint64_t op(size_t k) const {
    return order_is_put[k] ? put->op : get->op;
  }
};

/// Everything the channel keeps for one party.
struct party {
  /// The address it spoke through last (the record's key is the first; a
  /// remote party gets a new, equal proxy after a broken link).
  party_id addr;
  /// The host tells us when it exits or its link breaks.
  bool watched = false;
  /// Slots reserved for it and not used yet.
  uint64_t credit = 0;
  /// Streaming on credit: topped up unasked to `window` (its share of the
  /// capacity, if less) until it unreserves.
  bool streaming = false;
  uint64_t window = 0;
  uint64_t sender_id = 0;
  /// Its link broke: since when, under which expiry, and the credit it
  /// held (values it sent on it may still come, after the resume).
  struct suspension {
    uint64_t generation = 0;
    std::chrono::steady_clock::time_point since;
    uint64_t credit = 0;
  };
  std::optional<suspension> suspended;
  /// Operations it said it sends again after a resume.
  std::set<uint64_t> reissued;

  bool empty() const {
    return !watched && credit == 0 && !streaming && !suspended
           && reissued.empty();
  }
};

/// What a resuming party learns: whether we kept its session, the highest
/// sequence number of its sender we have, its credit, and its leases.
struct resumed {
  bool known = false;
  uint64_t last_seq = 0;
  uint64_t reserved = 0;
  std::vector<uint64_t> leases;
};

/// The first waiting operation that is not a select's offer.
template <class Queue>
auto first_plain(Queue& q) {
  return std::find_if(q.begin(), q.end(),
                      [](auto& x) { return x.how != via::offer; });
}

class channel_state {
public:
  channel_state(channel_spec spec, channel_callee& out);

  // -- sending ---------------------------------------------------------------

  /// (put): a value to deliver; waits for a slot or, at capacity 0, a
  /// receiver, unless `mode` says otherwise. Verdict: sent().
  void put(const party_id& from, uint64_t op, envelope value, put_mode mode,
           reply rp);

  /// (put_batch): values sent on credit, each on one slot reserved for the
  /// sender, so each is taken even if the channel closed after the grant.
  void put_batch(const party_id& from, std::vector<envelope>& values);

  // -- receiving -------------------------------------------------------------

  /// (get) / (get_many): a value, or up to `max`. Verdict: received(),
  /// received_many() or receive_failed().
  void get(const party_id& from, uint64_t op, bool many, uint64_t max,
           bool may_park, reply rp);

  /// (take): the receiver has the value; a capacity-0 sender is released
  /// now, in the same step that records the hand-off.
  void take(uint64_t lease);

  /// (commit) / (release) / (ack): ends a lease, committed or re-queued;
  /// lease_settled if it was ended already.
  caf::error settle(uint64_t lease, bool requeue);

  /// (ack_many): commits several leases.
  void ack_many(const std::vector<uint64_t>& leases);

  /// (unread): values fetched ahead and never read go back to the head,
  /// unflagged, in their order.
  void unread(const party_id& from, const std::vector<uint64_t>& leases);

  // -- waiting and closing ---------------------------------------------------

  /// (withdraw): cancels a waiting operation of `from`. A plain one is
  /// answered timeout; a select's case goes without a word; one already
  /// done stays done.
  void withdraw(const party_id& from, uint64_t op);

  /// (close): waiting and later sends fail with closed, receivers drain
  /// then get closed. A second close reports closed.
  caf::error close();

  // -- credit ----------------------------------------------------------------

  /// (reserve): up to `want` free slots, waiting until some are free (one
  /// if `urgent`, else a chunk); registers the sender as streaming.
  /// Verdict: credited() or credit_failed().
  void reserve(const party_id& from, uint64_t op, uint64_t want, bool urgent,
               uint64_t sender_id, reply rp);

  /// (hurry): the party's waiting credit request became urgent.
  void hurry(const party_id& from);

  /// (unreserve): gives `n` unused slots back and stops streaming.
  void unreserve(const party_id& from, uint64_t n);

  // -- parties and links -----------------------------------------------------

  /// The party exited (`link_broke` false), or its link broke: kept for
  /// the resume timeout unless it is zero or the party's node came back as
  /// a new process.
  void down(const party_id& who, bool link_broke);

  /// (expire): the resume window of suspension `generation` passed.
  void expire(uint64_t generation);

  /// (resume): a party whose link broke is back; `ops` it sends again.
  resumed resume(const party_id& from, uint64_t sender_id,
                 std::vector<uint64_t> ops);

  /// (leave): a party whose session ended is done with the channel.
  void leave(const party_id& from);

  /// (node_gone): a node came back as a new process: sessions of the old
  /// one end now and do not resume.
  void node_gone(const caf::node_id& node);

  // -- select ----------------------------------------------------------------

  /// (offer_get) / (offer_put): a select's case. First answer: a claim if
  /// it can complete now, else offer_answer (parked, would_block, failed).
  void offer_get(const party_id& selector, uint64_t op, bool may_park);
  void offer_put(const party_id& selector, uint64_t op, envelope value,
                 bool may_park);

  /// (claim_reply): a selector's answer to claim `id`.
  void claim_reply(const party_id& selector, uint64_t id, bool granted);

  // -- queries ---------------------------------------------------------------

  uint64_t len() const {
    return buffer_.size();
  }

  channel_stats stats() const;

  /// Recounts every term of the invariant from the queues themselves;
  /// empty if it holds, else what is off.
  std::string invariant_violation() const;

  /// The owner is shutting down: every waiting party gets peer_down, a
  /// capacity-0 sender in flight outcome_unknown.
  void shut_down();

private:
  // -- matching ----------------------------------------------------------------

  void dispatch();
  void serve_receivers();
  void fill_slots();
  void match_unbuffered();
  void serve_credit();
  void top_up();
  void wake_drained();

  // -- values and leases -------------------------------------------------------

  envelope lease_out(const party_id& holder, envelope value, bool counted,
                     std::optional<waiting_send> sender);
  void hand_over(waiting_receive& r, envelope value, bool counted,
                 std::optional<waiting_send> sender);
  void serve(waiting_receive& r);
  bool end_lease(uint64_t id, bool requeue);
  void give_back(std::map<uint64_t, lease>::iterator i,
                 bool maybe_seen = true);
  void erase_lease(std::map<uint64_t, lease>::iterator i);
  void push(envelope value, bool counted);
  void push_front(envelope value, bool counted);
  slot pop_front();

  // -- sending helpers ---------------------------------------------------------

  caf::error admit(const envelope& value, bool reserved = false) const;
  bool is_duplicate(const envelope& value) const;
  void accept(const waiting_send& s);
  void answer(waiting_send& s, caf::error err);
  bool adopt(const party_id& from, uint64_t op, reply& rp);
  uint64_t last_seq_of(uint64_t sender_id) const;
  uint64_t grant(const party_id& to, uint64_t want);

  // -- parties -----------------------------------------------------------------

  party& watch(const party_id& who);
  void forget_if_empty(const party_id& who);
  uint64_t drop_asks_of(const party_id& who);
  void drop_offers_of(const party_id& who);
  void suspend(const party_id& who);
  void gone(const party_id& who);
  void set_streaming(party& p, bool on);
  void report(link_event::kind what, const party_id& who, uint64_t replayed,
              std::chrono::steady_clock::time_point since) const;

  // -- select ------------------------------------------------------------------

  void first_answer(const party_id& selector, uint64_t op, bool is_put,
                    bool may_park);
  void start_claim(claim c);
  void ask(uint64_t id, const claim& c);
  void commit(claim c);
  void abandon_claim(uint64_t id, const party_id& refuser,
                     const caf::error& send_error = {});

  // -- slots -------------------------------------------------------------------

  size_t used_slots() const;
  size_t free_slots() const;
  uint64_t credit_chunk() const;
  bool first_credit_servable() const;
  bool drained() const;
  caf::error closed_error(std::string sentence = {}) const;
  caf::error timeout_error() const;

  // -- state -------------------------------------------------------------------

  /// What the channel is: name, element type, capacity, limits.
  channel_spec spec_;
  channel_callee& out_;
  /// close() was called.
  bool closed_ = false;

  /// The buffer, in order; counted_buffered_ of its values hold a slot.
  queue<slot> buffer_;
  size_t counted_buffered_ = 0;

  /// hchan's sendq and recvq: plain operations and select offers, in
  /// arrival order.
  queue<waiting_send> sendq_;
  queue<waiting_receive> recvq_;
  /// Credit requests, in order.
  queue<waiting_credit> creditq_;

  /// Values handed out and not committed; counted_leased_ hold a slot.
  std::map<uint64_t, lease> leases_;
  size_t counted_leased_ = 0;
  uint64_t next_lease_ = 1;

  /// Matches waiting for their selectors; claimed_slots_ are held by them
  /// (a receive offer's value, a send offer's slot).
  std::map<uint64_t, claim> claims_;
  size_t claimed_slots_ = 0;
  uint64_t next_claim_ = 1;

  /// One record per party; reserved_ is the sum of their credit.
  std::map<party_id, party> parties_;
  uint64_t reserved_ = 0;
  /// Parties streaming on credit.
  size_t streaming_ = 0;
  /// Round robin of top-ups: the party topped up last.
  party_id last_topped_up_;
  uint64_t next_generation_ = 1;

  /// The highest sequence number taken from each sender (by the sender id
  /// its values carry). Not in the party record: a sender's values may
  /// arrive after its record went (late credit sends), and must still be
  /// recognised as seen.
  std::unordered_map<uint64_t, uint64_t> last_seq_;
  /// Nodes that came back as new processes: their sessions do not resume.
  std::set<caf::node_id> gone_nodes_;

  channel_stats stats_;
};

} // namespace netchan::detail
