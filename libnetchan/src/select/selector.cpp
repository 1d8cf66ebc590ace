// select: the selector actor and its commit protocol.
//
// One selector actor per select call is the single commit point: a case
// fires only with its consent, and it consents once. Channel owners never
// complete a select's case on their own.
//
// 1. Offer. The selector asks each case's endpoint for its channel actor
//    (the endpoint flushes what it sent on credit first), then sends the
//    owner an offer: (offer_get, op) or (offer_put, op, value), may_park =
//    false for try_select. The owner keeps offers apart from plain parked
//    operations and answers each offer once, first:
//      - a claim, if the offer can complete now (see 2);
//      - offer_state parked (it waits), would_block (try_select: not kept),
//        or failed (the case fires with that error: closed, type mismatch).
// 2. Claim. When an offer can complete (a value or a free slot is there, or
//    at capacity 0 a counterpart), the owner sets aside what it needs (the
//    value, the slot, the counterpart) and sends (claim, op, id) to the
//    offer's selector; at capacity 0 with offers on both sides it claims
//    both selectors, one after the other, in one global order (by actor
//    address). The selector replies (claim_reply, id, granted):
//      - after every case has answered, it grants one claim, chosen at
//        random among the claims and failed cases it holds (Go's fairness);
//        later, the first claim to come;
//      - while a grant is not yet confirmed it *holds*: further claims wait
//        unanswered (this is what the global order makes deadlock-free: an
//        owner holding one selector only ever waits for a later one);
//      - once committed or finished, it refuses every claim.
//    With every selector granted, the owner sends (claim_end, id, true) to
//    each and completes the match; if one refuses (or is gone, or the
//    channel closes under a send), it sends (claim_end, id, false) to every
//    selector it asked but the refuser: those that granted are free again,
//    the one still asked drops the claim unanswered (granting it later
//    would leave it holding forever). The refusing offer is dropped and
//    everything else goes back where it was; a send fails with closed.
//    A grant of a claim the owner no longer has is answered with
//    (claim_end, id, false) too. Claim ids are per owner.
// 3. Complete. A receive case gets (offer_value, op, envelope) leased to the
//    selector, which acknowledges it; a send case gets (offer_done, op,
//    error) once its value is in the buffer (capacity N) or taken by the
//    receiver (capacity 0). The selector withdraws every other case
//    (withdraw, op): an offer still parked is dropped silently; one inside
//    a claim is refused when the claim arrives.
// 4. Failure. The selector monitors the owners: an owner that dies before
//    the commit makes its case ready with peer_down; after the commit, a
//    receive case ends with peer_down and a send case with outcome_unknown.
//    Owners monitor selectors: a selector that dies refuses its claims, and
//    a value leased to it goes back to the head of the queue, flagged
//    redelivered. A timeout (select_for) withdraws everything unless a
//    grant is pending; then the claim_end decides.

#include "netchan/select.hpp"

#include <algorithm>
#include <future>
#include <memory>
#include <optional>
#include <random>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "netchan/errc.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

namespace {

using select_timeout_atom = caf::atom_constant<caf::atom("nc_seltout")>;

/// How long a case's endpoint may take to name its channel (it may have
/// to resolve it on another node first).
constexpr auto channel_lookup_timeout = std::chrono::seconds{30};

/// Where a blocking select's thread waits for the verdict.
using verdict_slot = std::shared_ptr<std::promise<selected>>;

class selector_actor : public caf::event_based_actor {
public:
  /// `done`: a blocking select's slot; the selector starts at once and
  /// fills it. Without one it waits for (select_go) and answers that.
  selector_actor(caf::actor_config& cfg, std::vector<select_case> cases,
                 select_mode mode, caf::timespan timeout,
                 verdict_slot done = nullptr)
    : caf::event_based_actor(cfg), mode_(mode), timeout_(timeout),
      cases_(cases.size()), done_(std::move(done)) {
    for (size_t i = 0; i < cases.size(); ++i)
      cases_[i].spec = cases[i].get();
    set_down_handler([this](caf::down_msg& msg) { owner_down(msg.source); });
  }

  const char* name() const override {
    return "netchan.selector";
  }

  void on_exit() override {
    // Stopped from outside (the actor system is going): a blocking select
    // must not wait on a slot nobody fills.
    if (done_ && !finished_) {
      finished_ = true;
      selected r;
      r.error = make_error(errc::shut_down,
                           "the select's actor system shut down before a "
                           "case fired");
      done_->set_value(std::move(r));
    }
  }

  caf::behavior make_behavior() override {
    if (done_)
      begin();
    return {
      [this](select_go_atom) -> caf::result<selected> {
        rp_ = make_response_promise<selected>();
        begin();
        return rp_;
      },
      [this](offer_state_atom, uint64_t op, uint8_t state, caf::error& err) {
        on_state(op - 1, static_cast<offer_state>(state), std::move(err));
      },
      [this](claim_atom, uint64_t op, uint64_t id) {
        on_claim(op - 1, id, caf::actor_cast<caf::actor>(current_sender()));
      },
      [this](claim_end_atom, uint64_t id, bool confirmed) {
        on_claim_end(caf::actor_cast<caf::actor_addr>(current_sender()), id,
                     confirmed);
      },
      [this](offer_value_atom, uint64_t op, envelope& value) {
        on_value(op - 1, std::move(value));
      },
      [this](offer_done_atom, uint64_t op, caf::error& err) {
        if (committed_ && *committed_ == op - 1)
          finish(op - 1, std::move(err));
      },
      [this](select_timeout_atom) {
        timed_out_ = true;
        if (!held_ && !committed_)
          finish(no_case, make_error(errc::timeout,
                                     "no case of the select fired before "
                                     "the deadline; every case was "
                                     "withdrawn"));
      },
    };
  }

private:
  struct case_state {
    select_case::spec spec;
    caf::actor channel;
    bool answered = false;
  };

  struct pending_claim {
    size_t index;
    uint64_t id;
    caf::actor owner;
  };

  void begin() {
    if (cases_.empty()) {
      finish(no_case, make_error(errc::invalid_argument,
                                 "a select needs at least one case"));
      return;
    }
    if (mode_ == select_mode::timeout)
      delayed_send(this, timeout_, select_timeout_atom::value);
    for (size_t i = 0; i < cases_.size(); ++i) {
      auto& c = cases_[i];
      if (c.spec.error) {
        on_state(i, offer_state::failed, c.spec.error);
        continue;
      }
      request(c.spec.ep->actor(), channel_lookup_timeout, channel_atom::value)
        .then(
          [this, i](caf::actor& ch) {
            if (finished_)
              return;
            auto& c = cases_[i];
            c.channel = ch;
            monitor(ch);
            auto op = static_cast<uint64_t>(i + 1);
            auto may_park = mode_ != select_mode::poll;
            if (c.spec.is_send)
              send(ch, offer_put_atom::value, op, c.spec.value, may_park);
            else
              send(ch, offer_get_atom::value, op, may_park);
          },
          [this, i](caf::error& err) {
            on_state(i, offer_state::failed, std::move(err));
          });
    }
  }

  void answered(size_t i) {
    if (!cases_[i].answered) {
      cases_[i].answered = true;
      ++answered_;
    }
  }

  void on_state(size_t i, offer_state state, caf::error err) {
    if (finished_ || i >= cases_.size())
      return;
    answered(i);
    if (state == offer_state::failed)
      ready_errors_.emplace_back(i, std::move(err));
    decide();
  }

  void on_claim(size_t i, uint64_t id, caf::actor owner) {
    if (finished_ || committed_ || i >= cases_.size()) {
      send(owner, claim_reply_atom::value, id, false);
      return;
    }
    answered(i);
    claims_.push_back(pending_claim{i, id, std::move(owner)});
    decide();
  }

  /// Grants a claim or fires a failed case, once every case has answered
  /// (then at random among what is ready); with try_select and nothing
  /// ready, the default.
  void decide() {
    if (finished_ || held_ || committed_ || answered_ < cases_.size())
      return;
    auto ready = claims_.size() + ready_errors_.size();
    if (ready == 0) {
      if (mode_ == select_mode::poll)
        finish(no_case, make_error(errc::would_block,
                                   "no case of the select was ready"));
      return;
    }
    std::uniform_int_distribution<size_t> pick{0, ready - 1};
    auto k = pick(rng_);
    if (k >= claims_.size()) {
      auto [i, err] = ready_errors_[k - claims_.size()];
      finish(i, std::move(err));
      return;
    }
    held_ = claims_[k];
    claims_.erase(claims_.begin() + static_cast<std::ptrdiff_t>(k));
    send(held_->owner, claim_reply_atom::value, held_->id, true);
  }

  /// Claim ids are an owner's own: a claim is known by owner and id.
  void on_claim_end(const caf::actor_addr& owner, uint64_t id,
                    bool confirmed) {
    auto same = [&](const pending_claim& p) {
      return p.id == id && p.owner.address() == owner;
    };
    if (!held_ || !same(*held_)) {
      // A claim not granted yet that its owner dropped: it must not be
      // granted later (nobody would end it, and this select would hold
      // forever). Its case stays parked at the owner.
      if (!confirmed)
        claims_.erase(std::remove_if(claims_.begin(), claims_.end(), same),
                      claims_.end());
      return;
    }
    auto h = *held_;
    held_.reset();
    if (!confirmed) {
      if (timed_out_)
        finish(no_case, make_error(errc::timeout,
                                   "no case of the select fired before the "
                                   "deadline; every case was withdrawn"));
      else
        decide();
      return;
    }
    committed_ = h.index;
    refuse_claims();
    withdraw_others(h.index);
  }

  void on_value(size_t i, envelope value) {
    if (!committed_ || *committed_ != i) {
      // Not ours to take (cannot happen with a correct owner): give it back.
      send(cases_[i].channel, unread_atom::value,
           std::vector<uint64_t>{value.lease});
      return;
    }
    send(cases_[i].channel, ack_atom::value, value.lease);
    selected r;
    r.index = i;
    r.redelivered = value.redelivered;
    r.bytes = std::move(value.bytes);
    deliver(std::move(r));
  }

  void owner_down(const caf::actor_addr& gone) {
    for (size_t i = 0; i < cases_.size(); ++i) {
      auto& c = cases_[i];
      if (!c.channel || c.channel.address() != gone)
        continue;
      if (committed_ && *committed_ == i) {
        finish(i, c.spec.is_send
                    ? make_error(errc::outcome_unknown,
                                 "the channel's owner went down after the "
                                 "select's send was matched and before it "
                                 "was confirmed: it may have been delivered")
                    : make_error(errc::peer_down,
                                 "the channel's owner went down before the "
                                 "select's value arrived"));
        return;
      }
      if (committed_ || finished_)
        continue;
      claims_.erase(std::remove_if(claims_.begin(), claims_.end(),
                                   [&](const pending_claim& p) {
                                     return p.index == i;
                                   }),
                    claims_.end());
      if (held_ && held_->index == i)
        held_.reset(); // it can no longer confirm
      answered(i);
      ready_errors_.emplace_back(
        i, make_error(errc::peer_down,
                      "the owner of this case's channel is gone (its "
                      "process ended, or the link broke)"));
    }
    decide();
  }

  void refuse_claims() {
    for (auto& p : claims_)
      send(p.owner, claim_reply_atom::value, p.id, false);
    claims_.clear();
  }

  void withdraw_others(size_t winner) {
    for (size_t i = 0; i < cases_.size(); ++i)
      if (i != winner && cases_[i].channel)
        send(cases_[i].channel, withdraw_atom::value,
             static_cast<uint64_t>(i + 1));
  }

  void finish(size_t i, caf::error err) {
    selected r;
    r.index = i;
    r.error = std::move(err);
    deliver(std::move(r));
  }

  void deliver(selected r) {
    if (finished_)
      return;
    finished_ = true;
    refuse_claims();
    withdraw_others(r.index);
    if (done_)
      done_->set_value(std::move(r));
    else
      rp_.deliver(std::move(r));
    quit();
  }

  select_mode mode_;
  caf::timespan timeout_;
  std::vector<case_state> cases_;
  size_t answered_ = 0;
  std::vector<pending_claim> claims_;
  std::vector<std::pair<size_t, caf::error>> ready_errors_;
  std::optional<pending_claim> held_;
  std::optional<size_t> committed_;
  bool timed_out_ = false;
  bool finished_ = false;
  caf::typed_response_promise<selected> rp_;
  verdict_slot done_;
  std::minstd_rand rng_{std::random_device{}()};
};

} // namespace

caf::actor spawn_selector(caf::actor_system& sys,
                          std::vector<select_case> cases, select_mode mode,
                          caf::timespan timeout) {
  return sys.spawn<selector_actor>(std::move(cases), mode, timeout);
}

selected run_select(std::vector<select_case> cases, select_mode mode,
                    caf::timespan timeout) {
  selected result;
  if (cases.empty() || !cases.front().get().ep) {
    result.error = make_error(errc::invalid_argument,
                              "a select needs at least one case on a "
                              "channel");
    return result;
  }
  // No scoped_actor per call (CAF-NOTES: ~30x slower than an event-based
  // request): the selector fills a slot this thread waits on.
  auto& sys = cases.front().get().ep->system();
  auto done = std::make_shared<std::promise<selected>>();
  auto verdict = done->get_future();
  sys.spawn<selector_actor>(std::move(cases), mode, timeout, std::move(done));
  return verdict.get();
}

} // namespace netchan::detail
