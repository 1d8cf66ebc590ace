#pragma once

// Every message between netchan's actors, each with its signature
// `(atom, args...) -> reply` ("one-way": no reply). By receiver:
//   channel    what endpoints (and the node's directory) ask a channel actor
//   select     a selector's offers and the owning channel's claims
//   directory  what a node's threads, its endpoints and other nodes ask its
//              directory (node/directory.cpp)
//   go         the hello of a Go-style dialer to its listener (go/go.cpp)
//
// Not here, on purpose:
//   - select_go_atom ("nc_selgo"), in include/netchan/select.hpp: the public
//     select template sends it to a selector, so a public header needs it.
//   - messages an actor only gets from its own file (timers it sets itself,
//     nudges from its handles' fast path), private to that file:
//       channel/channel_actor.cpp    expire ("nc_expire"): a session's
//                                    resume window passed
//       select/selector.cpp          select_timeout ("nc_seltout"): a
//                                    select_for's deadline
//       endpoint/flow.hpp            flush, refill, fetch (nudges from
//                                    the threads' fast path)
//       endpoint/endpoint.hpp        idle, unread_check, redial, gap_over
//                                    (timers)
//
// No two atoms of the tree may share a text (an actor would take one
// message for another): the ctest wire.atoms_are_distinct checks it.

#include <cstdint>
#include <vector>

#include <caf/atom.hpp>

namespace netchan::detail {

// -- channel ------------------------------------------------------------------
//
// Every operation that can wait carries an operation id chosen by the
// requesting endpoint, so that the endpoint can withdraw it; the channel
// actor's answer to the original request is the single verdict (value / ok,
// or an error).

/// (put, op, envelope, may_park) -> ok | error. Capacity 0: answered when a
/// receiver has taken the value.
using put_atom = caf::atom_constant<caf::atom("nc_put")>;
/// (get, op, may_park) -> (lease_id, envelope) | error.
using get_atom = caf::atom_constant<caf::atom("nc_get")>;
/// (get_many, op, max, may_park) -> batch: up to `max` buffered values at
/// once, each leased (its id in `envelope::lease`); capacity >= 1 only.
/// (wire/batch.hpp: a batch travels flat, its payloads as one block.)
using get_many_atom = caf::atom_constant<caf::atom("nc_getmany")>;
/// (put_batch, batch): values sent on credit, each using one reserved slot
/// of the sender. One-way; refusals come back as `refused`.
using put_batch_atom = caf::atom_constant<caf::atom("nc_putbat")>;
/// (ack_many, std::vector<uint64_t>): commits several leases. One-way.
using ack_many_atom = caf::atom_constant<caf::atom("nc_ackmany")>;
/// (refused, seq, error): the owner refused a value sent on credit (a
/// protocol violation: the sender's edge checks the size). One-way.
using refused_atom = caf::atom_constant<caf::atom("nc_refused")>;
/// (take, lease_id): the receiver has the value (releases a capacity-0
/// sender); the lease stays until commit. One-way.
using take_atom = caf::atom_constant<caf::atom("nc_take")>;
/// (ack, lease_id): take and commit in one, for a plain receive. One-way.
using ack_atom = caf::atom_constant<caf::atom("nc_ack")>;
/// (commit, lease_id) -> ok | error: the value is done with; frees its slot.
using commit_atom = caf::atom_constant<caf::atom("nc_commit")>;
/// (release, lease_id) -> ok | error: give the value back; it is re-queued at
/// the head and flagged redelivered.
using release_atom = caf::atom_constant<caf::atom("nc_release")>;
/// (withdraw, op): cancel a parked put or get; the verdict arrives as the
/// answer to the original request. One-way.
using withdraw_atom = caf::atom_constant<caf::atom("nc_wdraw")>;
/// (close) -> ok | error(closed).
using close_atom = caf::atom_constant<caf::atom("nc_close")>;
/// (len) -> uint64_t.
using len_atom = caf::atom_constant<caf::atom("nc_len")>;
/// (check) -> std::string: the channel's invariant, term by term; empty if
/// it holds, else what is off (for tests after every step).
using check_atom = caf::atom_constant<caf::atom("nc_check")>;
/// (stats) -> channel_stats.
using stats_atom = caf::atom_constant<caf::atom("nc_stats")>;
/// (reserve, uint64_t want, bool urgent, uint64_t sender_id) ->
/// (uint64_t granted (>= 1), uint64_t last_seq): credit for free slots,
/// waiting until some are free: one if `urgent` (a caller is blocked), else a
/// chunk (a quarter of the capacity, or `want`); `closed` once closed.
/// `last_seq`: the highest sequence number of this sender the owner has, so
/// that the sender may forget what it keeps for a resume.
using reserve_atom = caf::atom_constant<caf::atom("nc_resv")>;
/// A reserve also registers its sender as streaming: until it unreserves,
/// the owner tops its credit up unasked as slots free, in chunks of a
/// quarter of the capacity, to the `want` of its last reserve (at most an
/// equal share of the capacity among the senders streaming):
/// (grant, uint64_t granted, uint64_t last_seq), one-way, owner to sender.
/// Asked-for credit would come a round trip after the slots free.
using grant_atom = caf::atom_constant<caf::atom("nc_grant")>;
/// (hurry): the sender's waiting reserve became urgent. One-way.
using hurry_atom = caf::atom_constant<caf::atom("nc_hurry")>;
/// (unread, std::vector<uint64_t>): leases of values fetched ahead and never
/// handed to the application: back to the head, unflagged. One-way.
using unread_atom = caf::atom_constant<caf::atom("nc_unread")>;
/// (unreserve, uint64_t n): give unused credit back, and stop streaming (no
/// more top-ups until the next reserve). One-way.
using unreserve_atom = caf::atom_constant<caf::atom("nc_unresv")>;
/// (resume, sender_id, std::vector<uint64_t> reissued_ops) ->
/// (bool known, uint64_t last_seq, uint64_t reserved,
///  std::vector<uint64_t> leases): the first message of an endpoint whose
/// link broke and healed. `known`: the owner kept its session (its leases,
/// credit and parked sends); the endpoint then settles the rest: it sends
/// again the values above `last_seq`, takes `reserved` as its credit, acks,
/// returns or keeps each of `leases`, and sends `reissued_ops` again (a put
/// among them that the owner still holds is adopted, not parked twice).
using resume_atom = caf::atom_constant<caf::atom("nc_resume")>;
/// (leave): an endpoint whose session ended (its window passed while it
/// redialled) is done with the channel: its state goes as if it were gone.
/// One-way.
using leave_atom = caf::atom_constant<caf::atom("nc_leave")>;
/// (node_gone, node_id): from the node's directory: a node came back as a
/// new process, so sessions of the old one end now. One-way, local only.
using node_gone_atom = caf::atom_constant<caf::atom("nc_gone")>;
/// The positive answer.
using ok_atom = caf::atom_constant<caf::atom("nc_ok")>;
/// (call, op_request, sync_slot): a blocking thread's operation. One-way.
using call_atom = caf::atom_constant<caf::atom("nc_call")>;

// -- select (select/selector.cpp has the commit protocol) ---------------------

/// (offer_get, op, may_park): a select's receive case. One-way; answered
/// with offer_state, or a claim, or (after a granted claim) offer_value.
using offer_get_atom = caf::atom_constant<caf::atom("nc_ofget")>;
/// (offer_put, op, envelope, may_park): a select's send case. One-way;
/// answered with offer_state, or a claim, then offer_done.
using offer_put_atom = caf::atom_constant<caf::atom("nc_ofput")>;
/// (offer_state, op, state, error): owner to selector, the first answer to
/// an offer that cannot be claimed now: parked, would_block (not parked), or
/// failed (the case fires with `error`, e.g. closed).
using offer_state_atom = caf::atom_constant<caf::atom("nc_ofstate")>;
/// (claim, op, claim_id): owner to selector: offer `op` can complete now;
/// may it? The owner holds what it needs until the reply.
using claim_atom = caf::atom_constant<caf::atom("nc_claim")>;
/// (claim_reply, claim_id, granted): selector to owner.
using claim_reply_atom = caf::atom_constant<caf::atom("nc_clreply")>;
/// (claim_end, claim_id, confirmed): owner to selector after a granted
/// claim: confirmed (the case fires) or released (the selector is free
/// again: the other side of a capacity-0 match refused). Released also goes
/// to a selector asked and not answered yet when the claim is dropped, and
/// answers a grant of a claim the owner no longer has.
using claim_end_atom = caf::atom_constant<caf::atom("nc_clend")>;
/// (offer_value, op, envelope): the value of a confirmed receive case,
/// leased to the selector (envelope.lease), which acknowledges it.
using offer_value_atom = caf::atom_constant<caf::atom("nc_ofvalue")>;
/// (offer_done, op, error): a confirmed send case ended: delivered (empty
/// error) or not (closed, outcome_unknown, ...).
using offer_done_atom = caf::atom_constant<caf::atom("nc_ofdone")>;
/// (channel) -> caf::actor: an endpoint's channel actor, after flushing
/// what the endpoint holds for it (a select case goes to the owner itself).
using channel_atom = caf::atom_constant<caf::atom("nc_chan")>;

// -- directory (node/directory.cpp) -------------------------------------------

/// (create, name, type_name, capacity, max_message_size) -> channel actor.
/// Local only: the node's own thread registers channels.
using create_atom = caf::atom_constant<caf::atom("nc_create")>;
/// (adopt, id, channel, type_name, capacity, max_message_size): makes an
/// anonymous channel reachable as "host:port/<id>" (its handle is about to
/// leave the process). One-way, local only.
using adopt_atom = caf::atom_constant<caf::atom("nc_adopt")>;
/// (lookup, name) -> (channel actor, type_name, capacity, max_message_size)
/// | unknown_channel.
using lookup_atom = caf::atom_constant<caf::atom("nc_lookup")>;
/// (resolve, "host:port/name") -> as lookup:
/// local lookup or connect + remote lookup. CAF's own errors come back
/// unchanged, for the caller to explain.
using resolve_atom = caf::atom_constant<caf::atom("nc_resolve")>;
/// (address, "host:port"): where this node listens, once it does. One-way.
using address_atom = caf::atom_constant<caf::atom("nc_addr")>;
/// (dial, "host:port") -> std::vector<std::string>: connects to that node
/// (or uses the connection there is) and answers its list.
using dial_atom = caf::atom_constant<caf::atom("nc_dial")>;
/// (list) -> std::vector<std::string>: the names of the hosted channels
/// (adopted ones, '#', are not listed).
using list_atom = caf::atom_constant<caf::atom("nc_list")>;
/// (hello, node_name): the first message of a node to a directory it
/// dialled. A name seen before from another CAF node id means that node was
/// restarted: the channels here end the old process's sessions at once
/// (node_gone). The default name "node" is not taken as an identity.
/// One-way.
using hello_atom = caf::atom_constant<caf::atom("nc_hello")>;

// -- go (go/go.cpp) -----------------------------------------------------------

/// (go_hello, inbox channel actor, client id, capacity) -> ok: a dialer
/// tells the listener's hello actor where its inbox is.
using go_hello_atom = caf::atom_constant<caf::atom("nc_gohello")>;

// -- values of the messages above ---------------------------------------------

/// States of offer_state.
enum class offer_state : uint8_t { parked, would_block, failed };

/// How a put uses the channel's capacity.
enum class put_mode : uint8_t {
  /// Wait for a slot (or, at capacity 0, a receiver).
  park,
  /// Succeed now or fail with would_block; never waits.
  try_once,
  /// Use one slot this sender reserved earlier; never waits.
  reserved,
};

} // namespace netchan::detail
