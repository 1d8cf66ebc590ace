// The endpoint actor: one per handle family. It turns a handle's operation
// into the channel protocol (protocol.hpp), keeps the operation until the
// channel actor's verdict arrives, withdraws it when its deadline passes, and
// acknowledges received values. Later layers (credit, batching, prefetch,
// resume) live here too: the channel actor stays the single judge.

#include "endpoint_actor.hpp"

#include <deque>
#include <iostream>
#include <random>
#include <unordered_map>
#include <variant>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "netchan/errc.hpp"
#include "directory.hpp"
#include "protocol.hpp"

namespace netchan::detail {

void sync_slot::complete(op_result&& result) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (done_)
      return;
    result_ = std::move(result);
    done_ = true;
  }
  cv_.notify_one();
}

op_result sync_slot::wait() {
  std::unique_lock<std::mutex> guard{mtx_};
  cv_.wait(guard, [this] { return done_; });
  return std::move(result_);
}

thread_reply::~thread_reply() {
  op_result gone;
  gone.err = make_error(errc::shut_down,
                        "the channel endpoint stopped before answering; "
                        "is the actor system shutting down?");
  slot_->complete(std::move(gone));
}

namespace {

uint64_t random_id() {
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  uint64_t id = 0;
  while (id == 0)
    id = gen();
  return id;
}

/// Whoever waits for an operation: an actor (through a response promise) or
/// a blocked thread.
using waiter = std::variant<caf::response_promise, thread_reply_ptr>;

/// Where an endpoint's channel is still to be found.
struct resolver {
  std::string where;
  caf::actor directory;
  caf::timespan timeout;
};

/// An operation waiting inside the endpoint (for credit, or for a value).
struct held_op {
  uint64_t op;
  op_request req;
  waiter w;
};

/// Values a sender may have on credit at once, and values a receiver may
/// fetch ahead of its calls: bounded by the capacity, since both count
/// against it at the owner.
constexpr uint64_t max_send_window = 1024;
constexpr uint64_t max_prefetch = 256;

/// How long a sender keeps unused credit after its last send.
constexpr auto idle_credit = std::chrono::milliseconds{50};

using flush_atom = caf::atom_constant<caf::atom("nc_flush")>;
using idle_atom = caf::atom_constant<caf::atom("nc_idle")>;

class endpoint_actor : public caf::event_based_actor {
public:
  endpoint_actor(caf::actor_config& cfg, caf::actor channel, size_t capacity,
                 size_t owner_max)
    : caf::event_based_actor(cfg), channel_(std::move(channel)),
      id_(random_id()), capacity_(capacity), owner_max_(owner_max) {
    set_down_handler([this](caf::down_msg& msg) {
      if (msg.source == channel_.address())
        on_channel_down();
    });
  }

  endpoint_actor(caf::actor_config& cfg, resolver how, size_t capacity,
                 caf::error error)
    : endpoint_actor(cfg, caf::actor{}, capacity, 0) {
    gone_ = std::move(error);
    if (!gone_)
      resolver_ = std::move(how);
  }

  const char* name() const override {
    return "netchan.endpoint";
  }

  caf::behavior make_behavior() override {
    if (channel_)
      monitor(channel_);
    return {
      [this](op_request& req) { start(std::move(req), make_response_promise()); },
      [this](call_atom, op_request& req, thread_reply_ptr& reply) {
        start(std::move(req), std::move(reply));
      },
      [this](withdraw_atom, uint64_t op) { deadline_passed(op); },
      [this](flush_atom) { flush(); },
      [this](idle_atom, uint64_t epoch) {
        if (epoch == epoch_ && credit_waiters_.empty())
          return_credit();
      },
      [this](refused_atom, uint64_t seq, caf::error& err) {
        // Our edge checks type and size with the owner's limits, so this
        // means a bug or a misbehaving owner: say so, loudly.
        std::cerr << "netchan: the channel's owner refused value #" << seq
                  << " sent on credit: " << netchan::to_string(err) << '\n';
      },
    };
  }

  void on_exit() override {
    fail_all(make_error(errc::shut_down, "the channel handle was destroyed"));
  }

private:
  void start(op_request req, waiter w) {
    if (gone_) {
      op_result res;
      res.err = gone_;
      deliver(w, std::move(res));
      return;
    }
    if (!channel_) {
      held_.emplace_back(std::move(req), std::move(w));
      if (held_.size() == 1)
        resolve();
      return;
    }
    if (req.kind == op_kind::put && owner_max_ != 0
        && req.value.payload.size() > owner_max_) {
      op_result res;
      res.err = make_error(errc::message_too_large,
                           "a value of " + std::to_string(
                             req.value.payload.size())
                             + " bytes exceeds the channel owner's "
                               "netchan.max-message-size = "
                             + std::to_string(owner_max_)
                             + "; it was not sent");
      deliver(w, std::move(res));
      return;
    }
    // Capacity N >= 1 streams: sends use credit, receives are fetched in
    // batches; capacity 0 keeps one exact request per operation.
    if (capacity_ > 0) {
      if (req.kind == op_kind::put && (req.may_park || credit_ > 0)) {
        send_on_credit(std::move(req), std::move(w));
        return;
      }
      if (req.kind == op_kind::get && (req.may_park || !prefetched_.empty())) {
        receive_fetched(std::move(req), std::move(w));
        return;
      }
      if (req.kind == op_kind::close) {
        flush();
        return_credit();
      }
    }
    auto op = next_op_++;
    pending_.emplace(op, std::move(w));
    auto fail = [this, op](caf::error& err) {
      op_result res;
      res.err = std::move(err);
      finish(op, std::move(res));
    };
    auto done = [this, op](ok_atom) { finish(op, op_result{}); };
    switch (req.kind) {
      case op_kind::put: {
        auto& v = req.value;
        v.sender = id_;
        v.seq = next_seq_++;
        v.redelivered = false;
        auto mode = req.may_park ? put_mode::park : put_mode::try_once;
        arm_deadline(op, req);
        request(channel_, caf::infinite, put_atom::value, op, std::move(v),
                static_cast<uint8_t>(mode))
          .then(done, fail);
        break;
      }
      case op_kind::get: {
        arm_deadline(op, req);
        auto keep_lease = req.lease;
        request(channel_, caf::infinite, get_atom::value, op, req.may_park)
          .then(
            [this, op, keep_lease](uint64_t lease, envelope& value) {
              if (keep_lease)
                send(channel_, take_atom::value, lease);
              else
                send(channel_, ack_atom::value, lease);
              op_result res;
              res.value = std::move(value);
              res.lease_id = keep_lease ? lease : 0;
              finish(op, std::move(res));
            },
            fail);
        break;
      }
      case op_kind::commit:
        request(channel_, caf::infinite, commit_atom::value, req.lease_id)
          .then(done, fail);
        break;
      case op_kind::release:
        request(channel_, caf::infinite, release_atom::value, req.lease_id)
          .then(done, fail);
        break;
      case op_kind::close:
        request(channel_, caf::infinite, close_atom::value).then(done, fail);
        break;
      case op_kind::len:
        request(channel_, caf::infinite, len_atom::value)
          .then(
            [this, op](uint64_t n) {
              op_result res;
              res.count = n;
              finish(op, std::move(res));
            },
            fail);
        break;
      case op_kind::stats:
        request(channel_, caf::infinite, stats_atom::value)
          .then(
            [this, op](channel_stats& st) {
              op_result res;
              res.stats = st;
              finish(op, std::move(res));
            },
            fail);
        break;
    }
  }

  /// A deadline is enforced by withdrawing at the channel actor, whose
  /// answer to the original request stays the only verdict.
  void arm_deadline(uint64_t op, const op_request& req) {
    if (req.may_park && req.timeout != no_deadline)
      delayed_send(this, req.timeout, withdraw_atom::value, op);
  }

  void finish(uint64_t op, op_result&& res) {
    auto i = pending_.find(op);
    if (i == pending_.end())
      return; // already failed (channel down)
    auto w = std::move(i->second);
    pending_.erase(i);
    deliver(w, std::move(res));
  }

  static void deliver(waiter& w, op_result&& res) {
    if (auto rp = std::get_if<caf::response_promise>(&w))
      rp->deliver(std::move(res));
    else
      std::get<thread_reply_ptr>(w)->deliver(std::move(res));
  }

  // -- sending on credit (capacity N >= 1) ------------------------------------

  /// A send completes as soon as its value holds a slot the owner reserved
  /// for this endpoint; values go out in batches, one message per flush.
  void send_on_credit(op_request req, waiter w) {
    if (credit_ > 0 && credit_waiters_.empty()) {
      use_credit(std::move(req.value));
      deliver(w, op_result{});
      return;
    }
    auto op = next_op_++;
    arm_deadline(op, req);
    credit_waiters_.push_back(held_op{op, std::move(req), std::move(w)});
    want_credit();
  }

  void use_credit(envelope v) {
    --credit_;
    ++epoch_;
    v.sender = id_;
    v.seq = next_seq_++;
    v.redelivered = false;
    batch_.push_back(std::move(v));
    schedule_flush();
  }

  void want_credit() {
    if (reserving_)
      return;
    reserving_ = true;
    auto window = std::min<uint64_t>(capacity_, max_send_window);
    auto want = std::max<uint64_t>(window > credit_ ? window - credit_ : 0,
                                   credit_waiters_.size());
    request(channel_, caf::infinite, reserve_atom::value, want)
      .then(
        [this](uint64_t granted) {
          reserving_ = false;
          credit_ += granted;
          while (credit_ > 0 && !credit_waiters_.empty()) {
            auto h = std::move(credit_waiters_.front());
            credit_waiters_.pop_front();
            use_credit(std::move(h.req.value));
            deliver(h.w, op_result{});
          }
          if (!credit_waiters_.empty())
            want_credit();
          else if (credit_ > 0)
            schedule_idle_check();
        },
        [this](caf::error& err) {
          reserving_ = false;
          fail_held(credit_waiters_, err); // closed: the values stay ours
        });
  }

  void schedule_flush() {
    if (!flush_scheduled_) {
      flush_scheduled_ = true;
      send(this, flush_atom::value);
    }
  }

  /// Sends what accumulated since the last flush: values in one message,
  /// acknowledgements in another.
  void flush() {
    flush_scheduled_ = false;
    if (!batch_.empty()) {
      send(channel_, put_batch_atom::value, std::move(batch_));
      batch_.clear();
      if (credit_ > 0)
        schedule_idle_check();
    }
    if (!acks_.empty()) {
      send(channel_, ack_many_atom::value, std::move(acks_));
      acks_.clear();
    }
  }

  void schedule_idle_check() {
    delayed_send(this, idle_credit, idle_atom::value, epoch_);
  }

  /// Gives unused credit back, so that other senders may use the slots.
  void return_credit() {
    if (credit_ > 0 && channel_) {
      flush();
      send(channel_, unreserve_atom::value, credit_);
      credit_ = 0;
    }
  }

  // -- receiving fetched values (capacity N >= 1) ------------------------------

  /// Values come from the owner in batches of up to (waiting calls +
  /// prefetch window), each leased to this endpoint until acknowledged.
  void receive_fetched(op_request req, waiter w) {
    if (!prefetched_.empty()) {
      auto v = std::move(prefetched_.front());
      prefetched_.pop_front();
      hand_to(req, w, std::move(v));
      return;
    }
    auto op = next_op_++;
    arm_deadline(op, req);
    get_waiters_.push_back(held_op{op, std::move(req), std::move(w)});
    fetch();
  }

  void hand_to(const op_request& req, waiter& w, envelope v) {
    op_result res;
    if (req.lease) {
      res.lease_id = v.lease;
    } else {
      acks_.push_back(v.lease);
      schedule_flush();
    }
    res.value = std::move(v);
    deliver(w, std::move(res));
  }

  void fetch() {
    if (fetching_ || get_waiters_.empty())
      return;
    fetching_ = true;
    fetch_op_ = next_op_++;
    auto prefetch = std::min<uint64_t>(capacity_, max_prefetch);
    uint64_t max = get_waiters_.size() + prefetch;
    request(channel_, caf::infinite, get_many_atom::value, fetch_op_, max,
            true)
      .then(
        [this](std::vector<envelope>& values) {
          fetching_ = false;
          for (auto& v : values) {
            if (!get_waiters_.empty()) {
              auto h = std::move(get_waiters_.front());
              get_waiters_.pop_front();
              hand_to(h.req, h.w, std::move(v));
            } else {
              prefetched_.push_back(std::move(v));
            }
          }
          fetch();
        },
        [this](caf::error& err) {
          fetching_ = false;
          if (is(err, errc::timeout)) // withdrawn: nobody was waiting
            fetch();                  // ... unless someone is by now
          else
            fail_held(get_waiters_, err);
        });
  }

  /// A deadline passed: an operation held here is withdrawn here (its value
  /// never left); one parked at the owner is withdrawn there.
  void deadline_passed(uint64_t op) {
    auto withdraw_held = [&](std::deque<held_op>& xs) {
      for (auto i = xs.begin(); i != xs.end(); ++i)
        if (i->op == op) {
          op_result res;
          res.err = make_error(errc::timeout,
                               "the deadline passed before the operation "
                               "could complete; it was withdrawn");
          deliver(i->w, std::move(res));
          xs.erase(i);
          return true;
        }
      return false;
    };
    if (withdraw_held(credit_waiters_))
      return;
    if (withdraw_held(get_waiters_)) {
      // Nobody waits any more: take the batch request back, so that values
      // are not fetched for no one (those already on their way stay ours).
      if (get_waiters_.empty() && fetching_)
        send(channel_, withdraw_atom::value, fetch_op_);
      return;
    }
    if (pending_.count(op) != 0)
      send(channel_, withdraw_atom::value, op);
  }

  void fail_held(std::deque<held_op>& xs, const caf::error& err) {
    auto held = std::move(xs);
    xs.clear();
    for (auto& h : held) {
      op_result res;
      res.err = err;
      deliver(h.w, std::move(res));
    }
  }

  /// A handle that arrived inside a value learns its channel actor from the
  /// directory on first use; operations wait meanwhile.
  void resolve() {
    request(resolver_.directory, resolver_.timeout, resolve_atom::value,
            resolver_.where)
      .then(
        [this](caf::actor& ch, std::string&, uint64_t, uint64_t max_size) {
          channel_ = std::move(ch);
          owner_max_ = max_size;
          monitor(channel_);
          release_held();
        },
        [this](caf::error& err) {
          auto node = resolver_.where.substr(0, resolver_.where.rfind('/'));
          gone_ = explain_resolve_error(std::move(err), node, [] {
            return std::string{"run node::open on the same address for a "
                               "diagnosis of the TLS handshake"};
          });
          release_held();
        });
  }

  void release_held() {
    auto held = std::move(held_);
    held_.clear();
    for (auto& [req, w] : held)
      start(std::move(req), std::move(w));
  }

  void on_channel_down() {
    gone_ = make_error(errc::peer_down,
                       "the channel's owner has shut the channel down");
    fail_all(gone_);
  }

  void fail_all(const caf::error& err) {
    fail_held(credit_waiters_, err);
    fail_held(get_waiters_, err);
    for (auto& [req, w] : held_) {
      op_result res;
      res.err = err;
      deliver(w, std::move(res));
    }
    held_.clear();
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [op, w] : pending) {
      op_result res;
      res.err = err;
      deliver(w, std::move(res));
    }
  }

  caf::actor channel_;
  uint64_t id_;
  uint64_t next_seq_ = 1;
  uint64_t next_op_ = 1;
  std::unordered_map<uint64_t, waiter> pending_;
  caf::error gone_;
  resolver resolver_;
  std::vector<std::pair<op_request, waiter>> held_;
  // Capacity N >= 1: credit and batches (sending), fetched values (receiving).
  size_t capacity_;
  size_t owner_max_;
  uint64_t credit_ = 0;
  bool reserving_ = false;
  uint64_t epoch_ = 0;
  std::vector<envelope> batch_;
  std::deque<held_op> credit_waiters_;
  bool flush_scheduled_ = false;
  std::deque<envelope> prefetched_;
  std::deque<held_op> get_waiters_;
  std::vector<uint64_t> acks_;
  bool fetching_ = false;
  uint64_t fetch_op_ = 0;
};

} // namespace

caf::actor spawn_endpoint(caf::actor_system& sys, caf::actor channel,
                          size_t capacity, size_t owner_max) {
  return sys.spawn<endpoint_actor>(std::move(channel), capacity, owner_max);
}

caf::actor spawn_resolving_endpoint(caf::actor_system& sys, std::string where,
                                    size_t capacity, caf::actor directory,
                                    caf::timespan timeout, caf::error error) {
  return sys.spawn<endpoint_actor>(
    resolver{std::move(where), std::move(directory), timeout}, capacity,
    std::move(error));
}

} // namespace netchan::detail
