#pragma once

// The messages a channel actor understands. Every operation that can wait
// carries an operation id chosen by the requesting endpoint, so that the
// endpoint can withdraw it; the channel actor's answer to the original
// request is the single verdict (value / ok, or an error).

#include <cstdint>
#include <vector>

#include <caf/atom.hpp>

namespace netchan::detail {

/// (put, op, envelope, may_park) -> ok | error. Capacity 0: answered when a
/// receiver has taken the value.
using put_atom = caf::atom_constant<caf::atom("nc_put")>;
/// (get, op, may_park) -> (lease_id, envelope) | error.
using get_atom = caf::atom_constant<caf::atom("nc_get")>;
/// (get_many, op, max, may_park) -> std::vector<envelope>: up to `max`
/// buffered values at once, each leased (its id in `envelope::lease`);
/// capacity >= 1 only.
using get_many_atom = caf::atom_constant<caf::atom("nc_getmany")>;
/// (put_batch, std::vector<envelope>): values sent on credit, each using one
/// reserved slot of the sender. One-way; refusals come back as `refused`.
using put_batch_atom = caf::atom_constant<caf::atom("nc_putbat")>;
/// (ack_many, std::vector<uint64_t>): commits several leases. One-way.
using ack_many_atom = caf::atom_constant<caf::atom("nc_ackmany")>;
/// (refused, seq, error): the owner refused a value sent on credit (a
/// protocol violation: the sender's edge checks type and size). One-way.
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
/// (stats) -> channel_stats.
using stats_atom = caf::atom_constant<caf::atom("nc_stats")>;
/// (reserve, uint64_t want, bool urgent) -> uint64_t granted (>= 1): credit
/// for free slots, waiting until some are free: one if `urgent` (a caller is
/// blocked), else a chunk (a quarter of the capacity, or `want`); `closed`
/// once closed.
using reserve_atom = caf::atom_constant<caf::atom("nc_resv")>;
/// (unreserve, uint64_t n): give unused credit back. One-way.
/// (hurry): the sender's waiting reserve became urgent. One-way.
using hurry_atom = caf::atom_constant<caf::atom("nc_hurry")>;
/// (unread, std::vector<uint64_t>): leases of values fetched ahead and never
/// handed to the application: back to the head, unflagged. One-way.
using unread_atom = caf::atom_constant<caf::atom("nc_unread")>;
using unreserve_atom = caf::atom_constant<caf::atom("nc_unresv")>;
/// The positive answer.
using ok_atom = caf::atom_constant<caf::atom("nc_ok")>;
/// (call, op_request, sync_slot): a blocking thread's operation. One-way.
using call_atom = caf::atom_constant<caf::atom("nc_call")>;

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
