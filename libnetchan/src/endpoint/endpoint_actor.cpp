// The endpoint actor's lifecycle and its operations (endpoint.hpp has the
// states and the messages). Each state is one behaviour: what differs
// between states is what happens to an operation and which messages count;
// what every state handles (deadlines, nudges, timers) comes after it.

#include "endpoint/endpoint.hpp"

#include <iostream>
#include <random>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/defaults.hpp>
#include <caf/exit_reason.hpp>

#include "netchan/errc.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

namespace {

uint64_t random_id() {
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  uint64_t id = 0;
  while (id == 0)
    id = gen();
  return id;
}

} // namespace

endpoint_actor::endpoint_actor(caf::actor_config& cfg, caf::actor channel,
                               flow_ptr f, std::string where)
  : caf::event_based_actor(cfg), channel_(std::move(channel)),
    id_(random_id()), flow_(std::move(f)), capacity_(flow_->capacity),
    stale_after_(caf::get_or(system().config(), "middleman.connection-timeout",
                             caf::defaults::middleman::connection_timeout)
                 / 2),
    where_(std::move(where)) {
  if (auto local = find_local_node(system())) {
    node_ = std::move(*local);
    if (!node_.directory || node_.resume_timeout.count() <= 0)
      where_.clear();
  } else {
    where_.clear();
  }
  if (channel_)
    owner_node_ = channel_.node();
  phase_ = channel_ ? phase::linked : phase::resolving;
  std::lock_guard<std::mutex> guard{flow_->mtx};
  flow_->stale_after = stale_after_;
  flow_->sender_id = id_;
  flow_->ready = linked();
  set_down_handler([this](caf::down_msg& msg) { on_down(msg); });
}

endpoint_actor::endpoint_actor(caf::actor_config& cfg, resolver how,
                               flow_ptr f, caf::error error)
  : endpoint_actor(cfg, caf::actor{}, std::move(f), how.where) {
  if (error) {
    gone_ = std::move(error);
    phase_ = phase::gone;
  } else {
    resolver_ = std::move(how);
  }
}

// -- lifecycle ----------------------------------------------------------------

caf::behavior endpoint_actor::make_behavior() {
  if (channel_)
    monitor(channel_);
  return behavior_of(phase_);
}

void endpoint_actor::enter(phase next) {
  phase_ = next;
  locked([next](flow& f) { f.ready = next == phase::linked; });
  become(behavior_of(next));
}

caf::behavior endpoint_actor::behavior_of(phase p) {
  switch (p) {
    case phase::resolving:
      return waiting_state().or_else(every_state());
    case phase::linked:
      return linked_state().or_else(every_state());
    case phase::in_gap:
      return gap_timers().or_else(waiting_state()).or_else(every_state());
    case phase::gone:
      break;
  }
  return gone_state().or_else(every_state());
}

caf::message_handler endpoint_actor::waiting_state() {
  return {
    [this](op_request& req) {
      wait_for_link(std::move(req), make_response_promise());
    },
    [this](call_atom, op_request& req, thread_reply_ptr& reply) {
      wait_for_link(std::move(req), std::move(reply));
    },
    [this](channel_atom) -> caf::result<caf::actor> {
      auto rp = make_response_promise<caf::actor>();
      channel_waiters_.push_back(rp);
      if (phase_ == phase::resolving)
        resolve();
      return rp;
    },
  };
}

caf::message_handler endpoint_actor::linked_state() {
  return {
    [this](op_request& req) { start(std::move(req), make_response_promise()); },
    [this](call_atom, op_request& req, thread_reply_ptr& reply) {
      start(std::move(req), std::move(reply));
    },
    [this](channel_atom) -> caf::result<caf::actor> {
      // A select goes to the owner itself: what this endpoint sent on
      // credit goes first, so the owner sees this sender's order, and
      // unused credit goes back, since a send case may need those slots.
      return_credit();
      return channel_;
    },
    [this](grant_atom, uint64_t granted, uint64_t last_seq) {
      add_credit(granted, last_seq);
    },
  };
}

caf::message_handler endpoint_actor::gap_timers() {
  return {
    [this](redial_atom, uint64_t link) {
      if (link == link_)
        redial();
    },
    [this](gap_over_atom, uint64_t link) {
      if (link == link_)
        end_session(make_error(
          errc::peer_down,
          "the link to the channel's owner at " + where_
            + " broke and did not heal within netchan.resume-timeout"));
    },
  };
}

caf::message_handler endpoint_actor::gone_state() {
  return {
    [this](op_request& req) { refuse(std::move(req), make_response_promise()); },
    [this](call_atom, op_request& req, thread_reply_ptr& reply) {
      refuse(std::move(req), std::move(reply));
    },
    [this](channel_atom) -> caf::result<caf::actor> { return gone_; },
  };
}

caf::message_handler endpoint_actor::every_state() {
  return {
    [this](withdraw_atom, uint64_t op) { deadline_passed(op); },
    [this](flush_atom) { flush(); },
    [this](refill_atom) {
      locked([](flow& f) { f.refill_posted = false; });
      want_credit();
    },
    [this](fetch_atom) {
      locked([](flow& f) { f.fetch_posted = false; });
      fetch();
    },
    [this](unread_check_atom, uint64_t taken_then) {
      unread_check_armed_ = false;
      return_unread(taken_then);
    },
    [this](idle_atom, uint64_t epoch) { idle_check(epoch); },
    // Out of its state: from the link before a break (settled by the
    // resume), or from a session that ended.
    [](grant_atom, uint64_t, uint64_t) {},
    [](redial_atom, uint64_t) {},
    [](gap_over_atom, uint64_t) {},
    [](refused_atom, uint64_t seq, caf::error& err) {
      // Our edge checks type and size with the owner's limits, so this
      // means a bug or a misbehaving owner: say so, loudly.
      std::cerr << "netchan: the channel's owner refused value #" << seq
                << " sent on credit: " << netchan::to_string(err) << '\n';
    },
  };
}

void endpoint_actor::on_down(caf::down_msg& msg) {
  if (msg.source != channel_.address())
    return;
  switch (phase_) {
    case phase::linked:
      if (msg.reason == caf::exit_reason::remote_link_unreachable
          && !where_.empty())
        link_lost();
      else
        end_session(make_error(errc::peer_down,
                               "the channel's owner is gone (its process "
                               "ended, or it shut the channel down)"));
      return;
    case phase::in_gap:
      // The link broke again while resuming: that attempt is over.
      ++attempt_;
      redial_later();
      return;
    case phase::resolving:
    case phase::gone:
      return;
  }
}

void endpoint_actor::on_exit() {
  // Values a send already reported as sent hold reserved slots: they must
  // reach the owner even if the handle goes right after sending.
  if (linked())
    return_credit();
  fail_all(make_error(errc::shut_down, "the channel handle was destroyed"));
}

// -- operations ---------------------------------------------------------------

void endpoint_actor::take(op_request req, waiter w) {
  switch (phase_) {
    case phase::linked:
      start(std::move(req), std::move(w));
      return;
    case phase::resolving:
    case phase::in_gap:
      wait_for_link(std::move(req), std::move(w));
      return;
    case phase::gone:
      refuse(std::move(req), std::move(w));
      return;
  }
}

void endpoint_actor::refuse(op_request, waiter w) {
  op_result res;
  res.err = gone_;
  deliver(w, std::move(res));
}

void endpoint_actor::wait_for_link(op_request req, waiter w) {
  if (phase_ == phase::in_gap && !req.may_park
      && (req.kind == op_kind::put || req.kind == op_kind::get)) {
    // A try does not wait for the link to heal: the channel is not ready.
    op_result res;
    res.err = make_error(errc::would_block,
                         "the link to the channel's owner is broken; it "
                         "is being redialled");
    deliver(w, std::move(res));
    return;
  }
  auto op = next_op_++;
  arm_deadline(op, req);
  held_.push_back(
    held_op{op, std::move(req), std::move(w), std::chrono::steady_clock::now()});
  if (phase_ == phase::resolving)
    resolve();
}

void endpoint_actor::start(op_request req, waiter w) {
  auto owner_max = locked([](flow& f) { return f.owner_max; });
  if (req.kind == op_kind::put && owner_max != 0
      && req.value.bytes.size() > owner_max) {
    op_result res;
    res.err = make_error(errc::message_too_large,
                         "a value of "
                           + std::to_string(req.value.bytes.size())
                           + " bytes exceeds the channel owner's "
                             "netchan.max-message-size = "
                           + std::to_string(owner_max) + "; it was not sent");
    deliver(w, std::move(res));
    return;
  }
  // Capacity N >= 1 streams: sends use credit, receives are fetched in
  // batches; capacity 0 keeps one exact request per operation.
  if (capacity_ > 0) {
    auto [credit, fetched] = locked([](flow& f) {
      return std::make_pair(f.credit, !f.prefetched.empty());
    });
    if (req.kind == op_kind::put && (req.may_park || credit > 0)) {
      send_on_credit(std::move(req), std::move(w));
      return;
    }
    if (req.kind == op_kind::get && (req.may_park || fetched)) {
      receive_fetched(std::move(req), std::move(w));
      return;
    }
    if (req.kind == op_kind::close) {
      flush();
      return_credit();
    }
  }
  at_owner(std::move(req), std::move(w));
}

/// One request per operation, answered by the owner: capacity 0 always,
/// and try operations or queries on any capacity.
void endpoint_actor::at_owner(op_request req, waiter w) {
  auto op = next_op_++;
  if (req.kind == op_kind::put) {
    auto& v = req.value;
    v.sender = id_;
    v.redelivered = false;
    // Values on credit still in the batch have lower sequence numbers: they
    // must reach the owner first, or it would take them for duplicates of
    // this one.
    std::vector<envelope> earlier;
    v.seq = locked([&](flow& f) {
      earlier.swap(f.batch);
      return f.next_seq++;
    });
    send_batch(std::move(earlier));
  }
  arm_deadline(op, req);
  pending_.emplace(op, sent_op{std::move(w), std::move(req)});
  issue(op, false);
}

void endpoint_actor::issue(uint64_t op, bool again) {
  auto& req = pending_.at(op).req;
  auto fail = on_this_link([this, op, again, kind = req.kind](caf::error& err) {
    if (again && kind == op_kind::close && is(err, errc::closed)) {
      finish(op, op_result{}); // our first close did it
      return;
    }
    op_result res;
    // A put whose answer was lost in transport may have been accepted.
    res.err = kind == op_kind::put && err.category() != errc_category
                ? in_doubt()
                : std::move(err);
    finish(op, std::move(res));
  });
  auto done = on_this_link([this, op](ok_atom) { finish(op, op_result{}); });
  switch (req.kind) {
    case op_kind::put: {
      auto mode = req.may_park ? put_mode::park : put_mode::try_once;
      request(channel_, caf::infinite, put_atom::value, op, req.value,
              static_cast<uint8_t>(mode))
        .then(done, fail);
      return;
    }
    case op_kind::get:
      request(channel_, caf::infinite, get_atom::value, op, req.may_park)
        .then(on_this_link([this, op, keep_lease = req.lease](
                             uint64_t lease, envelope& value) {
                saw_lease(lease);
                op_result res;
                res.value = std::move(value);
                res.lease_id = keep_lease ? lease : 0;
                if (keep_lease) {
                  locked([lease](flow& f) { f.held_leases.insert(lease); });
                  send(channel_, take_atom::value, lease);
                  finish(op, std::move(res));
                } else {
                  // The caller has the value before the owner forgets it.
                  // Measured at capacity 0 with the owner apart: the
                  // transfer median is about 8 % lower than acknowledging
                  // first (9 of 10 alternating runs).
                  finish(op, std::move(res));
                  send(channel_, ack_atom::value, lease);
                }
              }),
              fail);
      return;
    case op_kind::commit:
      request(channel_, caf::infinite, commit_atom::value, req.lease_id)
        .then(done, fail);
      return;
    case op_kind::release:
      request(channel_, caf::infinite, release_atom::value, req.lease_id)
        .then(done, fail);
      return;
    case op_kind::close:
      request(channel_, caf::infinite, close_atom::value).then(done, fail);
      return;
    case op_kind::len:
      request(channel_, caf::infinite, len_atom::value)
        .then(on_this_link([this, op](uint64_t n) {
                op_result res;
                res.count = n;
                finish(op, std::move(res));
              }),
              fail);
      return;
    case op_kind::stats:
      request(channel_, caf::infinite, stats_atom::value)
        .then(on_this_link([this, op](channel_stats& st) {
                op_result res;
                res.stats = st;
                finish(op, std::move(res));
              }),
              fail);
      return;
  }
}

/// A deadline is enforced by withdrawing at the channel actor, whose answer
/// to the original request stays the only verdict.
void endpoint_actor::arm_deadline(uint64_t op, const op_request& req) {
  if (req.may_park && req.timeout != no_deadline)
    delayed_send(this, req.timeout, withdraw_atom::value, op);
}

void endpoint_actor::finish(uint64_t op, op_result&& res) {
  auto i = pending_.find(op);
  if (i == pending_.end())
    return; // already failed (channel down)
  auto& req = i->second.req;
  if (req.kind == op_kind::commit || req.kind == op_kind::release)
    locked([&](flow& f) { f.held_leases.erase(req.lease_id); });
  auto w = std::move(i->second.w);
  pending_.erase(i);
  deliver(w, std::move(res));
}

void endpoint_actor::saw_lease(uint64_t id) {
  max_seen_ = std::max(max_seen_, id);
}

void endpoint_actor::deliver(waiter& w, op_result&& res) {
  if (auto rp = std::get_if<caf::response_promise>(&w))
    rp->deliver(std::move(res));
  else
    std::get<thread_reply_ptr>(w)->deliver(std::move(res));
}

/// Holds an operation here until credit or a value arrives (with its
/// deadline); a try goes to the owner instead, one round trip at most.
bool endpoint_actor::hold(queue<held_op>& queue, op_request req,
                          waiter w) {
  if (!req.may_park) {
    at_owner(std::move(req), std::move(w));
    return false;
  }
  auto op = next_op_++;
  arm_deadline(op, req);
  queue.push_back(
    held_op{op, std::move(req), std::move(w), std::chrono::steady_clock::now()});
  sync_waiters();
  return true;
}

void endpoint_actor::sync_waiters() {
  locked([this](flow& f) {
    f.credit_waiters = credit_waiters_.size();
    f.get_waiters = get_waiters_.size();
  });
}

void endpoint_actor::post_self(const nudges& n) {
  post(n, [this](auto atom) { send(this, atom); });
}

/// A deadline passed: an operation held here is withdrawn here (its value
/// never left); one parked at the owner is withdrawn there.
void endpoint_actor::deadline_passed(uint64_t op) {
  auto withdraw_held = [&](queue<held_op>& xs) {
    for (auto i = xs.begin(); i != xs.end(); ++i)
      if (i->op == op) {
        op_result res;
        res.err = deadline_error();
        deliver(i->w, std::move(res));
        xs.erase(i);
        return true;
      }
    return false;
  };
  if (withdraw_held(credit_waiters_)) {
    sync_waiters();
    return;
  }
  if (withdraw_held(get_waiters_)) {
    sync_waiters();
    // Nobody waits any more: take the batch request back, so that values
    // are not fetched for no one (those already on their way stay ours).
    if (get_waiters_.empty() && fetching_ && linked())
      send(channel_, withdraw_atom::value, fetch_op_);
    return;
  }
  if (withdraw_held(held_))
    return;
  auto i = pending_.find(op);
  if (i == pending_.end())
    return;
  if (linked()) {
    send(channel_, withdraw_atom::value, op);
    return;
  }
  // The link is broken: the owner cannot be asked. A receive ends now (a
  // value on its way back is returned by the resume). A send may have been
  // taken meanwhile: it is in doubt, and the resume withdraws it.
  op_result res;
  if (i->second.req.kind == op_kind::put) {
    res.err = make_error(errc::outcome_unknown,
                         "the deadline passed while the link to the "
                         "channel's owner was broken: the value may have "
                         "been delivered; it is back with the caller");
    withdrawn_.push_back(op);
  } else {
    res.err = make_error(errc::timeout,
                         "the deadline passed while the link to the "
                         "channel's owner was broken; the operation was "
                         "withdrawn");
  }
  finish(op, std::move(res));
}

void endpoint_actor::fail_held(queue<held_op>& xs,
                               const caf::error& err) {
  auto held = std::move(xs);
  xs.clear();
  for (auto& h : held) {
    op_result res;
    res.err = err;
    deliver(h.w, std::move(res));
  }
}

void endpoint_actor::fail_all(const caf::error& err, bool owner_died) {
  fail_held(credit_waiters_, err);
  fail_held(get_waiters_, err);
  fail_held(held_, err);
  for (auto& rp : channel_waiters_)
    rp.deliver(err);
  channel_waiters_.clear();
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [op, sent] : pending) {
    op_result res;
    // A put waiting at the owner may have been matched with a receiver in
    // its last moment: the receiver's copy and a notice to us would travel
    // on different links, so no notice could settle it.
    res.err = owner_died && sent.req.kind == op_kind::put ? in_doubt() : err;
    deliver(sent.w, std::move(res));
  }
}

caf::error endpoint_actor::deadline_error() {
  return make_error(errc::timeout, "the deadline passed before the "
                                   "operation could complete; it was "
                                   "withdrawn");
}

caf::error endpoint_actor::in_doubt() {
  return make_error(errc::outcome_unknown,
                    "the channel's owner went down after the value was "
                    "sent and before it confirmed it: it may have been "
                    "delivered; the value is back with the caller");
}

caf::actor spawn_endpoint(caf::actor_system& sys, caf::actor channel,
                          flow_ptr f, std::string where) {
  return sys.spawn<endpoint_actor>(std::move(channel), std::move(f),
                                   std::move(where));
}

caf::actor spawn_resolving_endpoint(caf::actor_system& sys, std::string where,
                                    std::string type_name, flow_ptr f,
                                    caf::actor directory,
                                    caf::timespan timeout, caf::error error) {
  return sys.spawn<endpoint_actor>(
    resolver{std::move(where), std::move(directory), timeout,
             std::move(type_name)},
    std::move(f), std::move(error));
}

} // namespace netchan::detail
