// The endpoint actor: one per handle family. It turns a handle's operation
// into the channel protocol (protocol.hpp), keeps the operation until the
// channel actor's verdict arrives, withdraws it when its deadline passes, and
// acknowledges received values. Later layers (credit, batching, prefetch,
// resume) live here too: the channel actor stays the single judge.

#include "endpoint_actor.hpp"

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

class endpoint_actor : public caf::event_based_actor {
public:
  endpoint_actor(caf::actor_config& cfg, caf::actor channel)
    : caf::event_based_actor(cfg), channel_(std::move(channel)),
      id_(random_id()) {
    set_down_handler([this](caf::down_msg& msg) {
      if (msg.source == channel_.address())
        on_channel_down();
    });
  }

  endpoint_actor(caf::actor_config& cfg, resolver how, caf::error error)
    : endpoint_actor(cfg, caf::actor{}) {
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
      [this](withdraw_atom, uint64_t op) {
        if (pending_.count(op) != 0)
          send(channel_, withdraw_atom::value, op);
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

  /// A handle that arrived inside a value learns its channel actor from the
  /// directory on first use; operations wait meanwhile.
  void resolve() {
    request(resolver_.directory, resolver_.timeout, resolve_atom::value,
            resolver_.where)
      .then(
        [this](caf::actor& ch, std::string&, uint64_t) {
          channel_ = std::move(ch);
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
};

} // namespace

caf::actor spawn_endpoint(caf::actor_system& sys, caf::actor channel) {
  return sys.spawn<endpoint_actor>(std::move(channel));
}

caf::actor spawn_resolving_endpoint(caf::actor_system& sys, std::string where,
                                    caf::actor directory, caf::timespan timeout,
                                    caf::error error) {
  return sys.spawn<endpoint_actor>(
    resolver{std::move(where), std::move(directory), timeout},
    std::move(error));
}

} // namespace netchan::detail
