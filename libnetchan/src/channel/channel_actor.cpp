// The channel actor: the shell around one channel_state (the channel's
// semantics, channel/channel_state.hpp). One handler per message, each one
// line into the state; what the state decides to say goes out through the
// channel_callee below. The actor's own business: who sent the message
// being handled, response promises (made here, kept by the state with the
// operation that waits, delivered here), monitoring parties, and the timer
// of a broken link's resume window.

#include "channel/channel_actor.hpp"

#include <utility>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "channel/channel_state.hpp"
#include "netchan/envelope.hpp"
#include "netchan/errc.hpp"
#include "netchan/stats.hpp"
#include "wire/batch.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

namespace {

using expire_atom = caf::atom_constant<caf::atom("nc_expire")>;

class channel_actor : public caf::event_based_actor, private channel_callee {
public:
  channel_actor(caf::actor_config& cfg, channel_spec spec)
    : caf::event_based_actor(cfg),
      resume_timeout_(spec.resume_timeout),
      state_(std::move(spec), *this) {
    set_down_handler([this](caf::down_msg& msg) {
      state_.down(msg.source,
                  msg.reason == caf::exit_reason::remote_link_unreachable);
    });
  }

  const char* name() const override {
    return "netchan.channel";
  }

  caf::behavior make_behavior() override {
    return {
      [this](put_atom, uint64_t op, envelope& value, uint8_t mode) {
        // make_response_promise() takes the sender out of the message.
        auto from = who();
        state_.put(from, op, std::move(value), static_cast<put_mode>(mode),
                   make_response_promise());
      },
      [this](get_atom, uint64_t op, bool may_park) {
        auto from = who();
        state_.get(from, op, false, 1, may_park, make_response_promise());
      },
      [this](get_many_atom, uint64_t op, uint64_t max, bool may_park) {
        auto from = who();
        state_.get(from, op, true, max, may_park, make_response_promise());
      },
      [this](put_batch_atom, batch& values) {
        state_.put_batch(who(), values.values);
      },
      [this](ack_many_atom, const std::vector<uint64_t>& ids) {
        state_.ack_many(ids);
      },
      [this](take_atom, uint64_t id) { state_.take(id); },
      [this](ack_atom, uint64_t id) {
        static_cast<void>(state_.settle(id, false));
      },
      [this](commit_atom, uint64_t id) -> caf::result<ok_atom> {
        return ok_or(state_.settle(id, false));
      },
      [this](release_atom, uint64_t id) -> caf::result<ok_atom> {
        return ok_or(state_.settle(id, true));
      },
      [this](withdraw_atom, uint64_t op) { state_.withdraw(who(), op); },
      [this](close_atom) -> caf::result<ok_atom> {
        return ok_or(state_.close());
      },
      [this](len_atom) { return state_.len(); },
      [this](stats_atom) { return state_.stats(); },
      [this](check_atom) { return state_.invariant_violation(); },
      [this](reserve_atom, uint64_t want, bool urgent, uint64_t sender_id) {
        // Credit requests carry no operation id: none is needed to answer.
        auto from = who();
        state_.reserve(from, 0, want, urgent, sender_id,
                       make_response_promise());
      },
      [this](hurry_atom) { state_.hurry(who()); },
      [this](unread_atom, const std::vector<uint64_t>& ids) {
        state_.unread(who(), ids);
      },
      [this](resume_atom, uint64_t sender_id, std::vector<uint64_t>& ops)
        -> caf::result<bool, uint64_t, uint64_t, std::vector<uint64_t>> {
        auto r = state_.resume(who(), sender_id, std::move(ops));
        return {r.known, r.last_seq, r.reserved, std::move(r.leases)};
      },
      [this](expire_atom, uint64_t generation) { state_.expire(generation); },
      [this](leave_atom) { state_.leave(who()); },
      [this](node_gone_atom, const caf::node_id& gone) {
        state_.node_gone(gone);
      },
      [this](unreserve_atom, uint64_t n) { state_.unreserve(who(), n); },
      [this](offer_get_atom, uint64_t op, bool may_park) {
        state_.offer_get(who(), op, may_park);
      },
      [this](offer_put_atom, uint64_t op, envelope& value, bool may_park) {
        state_.offer_put(who(), op, std::move(value), may_park);
      },
      [this](claim_reply_atom, uint64_t id, bool granted) {
        state_.claim_reply(who(), id, granted);
      },
    };
  }

  void on_exit() override {
    // CAF 0.17 has no broken-promise error: answer everyone still waiting.
    state_.shut_down();
  }

private:
  static caf::result<ok_atom> ok_or(caf::error err) {
    if (err)
      return err;
    return ok_atom::value;
  }

  /// The party that sent the message being handled.
  party_id who() {
    return caf::actor_cast<caf::actor_addr>(current_sender());
  }

  static caf::actor to_actor(const party_id& who) {
    return caf::actor_cast<caf::actor>(who);
  }

  // -- channel_callee ----------------------------------------------------------

  // Verdicts: the promise says where they go.

  void sent(const party_id&, uint64_t, reply& rp, caf::error err) override {
    if (err)
      rp.deliver(std::move(err));
    else
      rp.deliver(ok_atom::value);
  }

  void received(const party_id&, uint64_t, reply& rp,
                envelope value) override {
    auto lease = value.lease;
    rp.deliver(lease, std::move(value));
  }

  void received_many(const party_id&, uint64_t, reply& rp,
                     std::vector<envelope> values) override {
    rp.deliver(batch{std::move(values)});
  }

  void receive_failed(const party_id&, uint64_t, reply& rp,
                      caf::error err) override {
    rp.deliver(std::move(err));
  }

  void credited(const party_id&, uint64_t, reply& rp, uint64_t granted,
                uint64_t last_seq) override {
    rp.deliver(granted, last_seq);
  }

  void credit_failed(const party_id&, uint64_t, reply& rp,
                     caf::error err) override {
    rp.deliver(std::move(err));
  }

  void refuse(const party_id& to, uint64_t seq, caf::error err) override {
    send(to_actor(to), refused_atom::value, seq, std::move(err));
  }

  void grant(const party_id& to, uint64_t granted,
             uint64_t last_seq) override {
    send(to_actor(to), grant_atom::value, granted, last_seq);
  }

  void offer_answer(const party_id& selector, uint64_t op, offer_state state,
                    caf::error err) override {
    send(to_actor(selector), offer_state_atom::value, op,
         static_cast<uint8_t>(state), std::move(err));
  }

  void claim(const party_id& selector, uint64_t op, uint64_t id) override {
    send(to_actor(selector), claim_atom::value, op, id);
  }

  void claim_end(const party_id& selector, uint64_t id,
                 bool confirmed) override {
    send(to_actor(selector), claim_end_atom::value, id, confirmed);
  }

  void offer_value(const party_id& selector, uint64_t op,
                   envelope value) override {
    send(to_actor(selector), offer_value_atom::value, op, std::move(value));
  }

  void offer_done(const party_id& selector, uint64_t op,
                  caf::error err) override {
    send(to_actor(selector), offer_done_atom::value, op, std::move(err));
  }

  void watch(const party_id& party) override {
    monitor(party);
  }

  void expire_later(uint64_t generation) override {
    delayed_send(this, resume_timeout_, expire_atom::value, generation);
  }

  // -- state -------------------------------------------------------------------

  caf::timespan resume_timeout_;
  channel_state state_;
};

} // namespace

caf::actor spawn_channel(caf::actor_system& sys, channel_spec spec) {
  return sys.spawn<channel_actor>(std::move(spec));
}

} // namespace netchan::detail
