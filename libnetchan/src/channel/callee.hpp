#pragma once

// What a channel says to the world. The channel (channel_state.hpp) decides;
// whoever hosts it (the channel actor, or a test) carries out what it
// decides through this interface, as CAF's basp::instance talks to its
// middleman through basp::instance::callee.
//
// Verdicts of requests name the requester and its operation id, and carry
// the reply the host handed in with the request (the channel keeps it while
// the operation waits; to the channel it is an opaque value, and a test's
// host may hand in empty ones). One-way messages name their receiver. A
// party is an endpoint or a selector, known by its actor address.

#include <cstdint>
#include <vector>

#include <caf/actor_addr.hpp>
#include <caf/error.hpp>
#include <caf/response_promise.hpp>

#include "netchan/envelope.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

using party_id = caf::actor_addr;

/// How a request is answered: the host's response promise.
using reply = caf::response_promise;

class channel_callee {
public:
  virtual ~channel_callee() = default;

  // -- verdicts of requests --------------------------------------------------

  /// A put ended: delivered or accepted (empty `err`), or refused.
  virtual void sent(const party_id& to, uint64_t op, reply& rp, caf::error err) = 0;

  /// A get got its value, leased (the lease id is in `value.lease`).
  virtual void received(const party_id& to, uint64_t op, reply& rp, envelope value) = 0;

  /// A get_many got its values, each leased.
  virtual void received_many(const party_id& to, uint64_t op, reply& rp,
                             std::vector<envelope> values)
    = 0;

  /// A get or get_many failed (closed, would_block, timeout, ...).
  virtual void receive_failed(const party_id& to, uint64_t op, reply& rp,
                              caf::error err)
    = 0;

  /// A credit request got `granted` slots; `last_seq` is the highest
  /// sequence number of the sender the channel has.
  virtual void credited(const party_id& to, uint64_t op, reply& rp, uint64_t granted,
                        uint64_t last_seq)
    = 0;

  /// A credit request failed (closed, invalid_argument).
  virtual void credit_failed(const party_id& to, uint64_t op, reply& rp, caf::error err)
    = 0;

  // -- one-way messages ------------------------------------------------------

  /// refused_atom: a value sent on credit was not taken.
  virtual void refuse(const party_id& to, uint64_t seq, caf::error err) = 0;

  /// grant_atom: credit topped up unasked.
  virtual void grant(const party_id& to, uint64_t granted, uint64_t last_seq)
    = 0;

  /// offer_state_atom: the first answer to an offer not claimed now.
  virtual void offer_answer(const party_id& selector, uint64_t op,
                            offer_state state, caf::error err)
    = 0;

  /// claim_atom: may offer `op` complete now?
  virtual void claim(const party_id& selector, uint64_t op, uint64_t id) = 0;

  /// claim_end_atom: a claim was confirmed, or released.
  virtual void claim_end(const party_id& selector, uint64_t id,
                         bool confirmed)
    = 0;

  /// offer_value_atom: the value of a confirmed receive case, leased.
  virtual void offer_value(const party_id& selector, uint64_t op,
                           envelope value)
    = 0;

  /// offer_done_atom: a confirmed send case ended.
  virtual void offer_done(const party_id& selector, uint64_t op,
                          caf::error err)
    = 0;

  // -- the host's own business -----------------------------------------------

  /// Tell the channel (gone or link_broke) when `party` exits or its link
  /// breaks. Called once per party until it is gone or its link broke.
  virtual void watch(const party_id& party) = 0;

  /// Call expire(generation) after the channel's resume timeout.
  virtual void expire_later(uint64_t generation) = 0;
};

} // namespace netchan::detail
