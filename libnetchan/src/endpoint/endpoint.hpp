#pragma once

// The endpoint actor: one per handle family. It turns a handle's operation
// into the channel protocol (wire/protocol.hpp), keeps the operation until
// the channel actor's verdict arrives, withdraws it when its deadline
// passes, and acknowledges received values. The channel actor stays the
// single judge; the endpoint only carries, batches and remembers.
//
// Its lifecycle, one CAF behaviour per state (endpoint_actor.cpp):
//
//   resolving ──found──▶ linked ◀──resumed── in_gap
//       │                  │  └──link broke──▶  │
//       │ not found        │ owner gone         │ resume-timeout, new
//       ▼                  ▼                    ▼ process, session ended
//      gone ◀──────────────┴────────────────────┘
//
//   resolving  a handle that arrived inside a value asks the directory for
//              its channel on first use; operations wait.
//   linked     operations go to the owner: one request each (capacity 0,
//              tries, queries) or on credit and fetched in batches.
//   in_gap     the link broke (the proxy went down with
//              remote_link_unreachable): nothing is sent, operations wait
//              with their deadlines, the endpoint redials with jittered
//              backoff and asks the owner to resume (session.cpp).
//   gone       every operation fails with the reason the session ended.
//
// Answers to requests sent on a link that broke since are dropped in one
// place, `on_this_link`: the resume settles what they carried.
//
// The concerns live in their own files: the thread fast path (flow.hpp,
// fast_path.cpp), sending on credit (credit.cpp), fetching ahead
// (prefetch.cpp), and the session: resolving, gaps, redial and resume
// (session.cpp).
//
// Messages it handles:
//   op_request                        an actor's operation (actor_api.hpp)
//   (call, op_request, thread_reply)  a blocked thread's operation
//   (withdraw, op)                    an operation's deadline passed
//   (channel) -> actor                the owner, for a select (linked only)
//   (grant, n, last_seq)              credit topped up unasked (linked only)
//   (refused, seq, error)             the owner refused a value on credit
//   flush, refill, fetch              nudges from the fast path (flow.hpp)
//   idle, unread_check                its own timers (credit.cpp, prefetch.cpp)
//   redial, gap_over                  its own timers of a gap (in_gap only)
//   down of the channel actor         linked: gap or gone; in_gap: redial

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/detail/type_traits.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/message.hpp>
#include <caf/message_handler.hpp>
#include <caf/node_id.hpp>
#include <caf/response_promise.hpp>
#include <caf/typed_response_promise.hpp>

#include "endpoint/flow.hpp"
#include "netchan/link_event.hpp"
#include "node/directory.hpp"
#include "util/queue.hpp"

namespace netchan::detail {

/// Whoever waits for an operation: an actor (through a response promise) or
/// a blocked thread.
using waiter = std::variant<caf::response_promise, thread_reply_ptr>;

/// Where an endpoint's channel is still to be found.
struct resolver {
  std::string where;
  caf::actor directory;
  caf::timespan timeout;
  std::string type_name;
};

/// An operation waiting inside the endpoint (for credit, a value, the
/// channel to be found, or a broken link to heal).
struct held_op {
  uint64_t op;
  op_request req;
  waiter w;
  std::chrono::steady_clock::time_point since{};
};

/// A request the owner has not answered yet, kept to be sent again after a
/// broken link healed.
struct sent_op {
  waiter w;
  op_request req;
};

/// How long a sender keeps unused credit after its last send, and a
/// receiver values fetched ahead that it does not take.
constexpr auto idle_credit = std::chrono::milliseconds{50};

// Self-messages (timers) of the endpoint actor.
using idle_atom = caf::atom_constant<caf::atom("nc_idle")>;
using unread_check_atom = caf::atom_constant<caf::atom("nc_unrchk")>;
using redial_atom = caf::atom_constant<caf::atom("nc_redial")>;
using gap_over_atom = caf::atom_constant<caf::atom("nc_gapover")>;

/// The endpoint's lifecycle (see the top of this file).
enum class phase : uint8_t { resolving, linked, in_gap, gone };

class endpoint_actor : public caf::event_based_actor {
public:
  endpoint_actor(caf::actor_config& cfg, caf::actor channel, flow_ptr f,
                 std::string where);

  endpoint_actor(caf::actor_config& cfg, resolver how, flow_ptr f,
                 caf::error error);

  const char* name() const override {
    return "netchan.endpoint";
  }

  caf::behavior make_behavior() override;

  void on_exit() override;

private:
  // -- lifecycle (endpoint_actor.cpp) -----------------------------------------

  /// Moves to `next` and takes on its behaviour.
  void enter(phase next);

  /// The behaviour of phase `p`: its own handlers, then what every phase
  /// handles. Resolving is waiting_state; in_gap is gap_timers, then
  /// waiting_state.
  caf::behavior behavior_of(phase p);
  /// Resolving or in a gap: operations and selects wait for the link.
  caf::message_handler waiting_state();
  caf::message_handler gap_timers();
  caf::message_handler linked_state();
  caf::message_handler gone_state();
  caf::message_handler every_state();

  void on_down(caf::down_msg& msg);

  bool linked() const {
    return phase_ == phase::linked;
  }

  /// Wraps the handler of an answer to a request sent now: it runs only if
  /// the link has not broken since. The one place where answers of an old
  /// link are dropped.
  template <class F>
  auto on_this_link(F f) {
    using args = typename caf::detail::get_callable_trait<F>::arg_types;
    return guard_link(std::move(f), args{});
  }

  template <class F, class... Ts>
  auto guard_link(F f, caf::detail::type_list<Ts...>) {
    return [this, link = link_, f = std::move(f)](Ts... xs) mutable {
      if (link == link_)
        f(std::forward<Ts>(xs)...);
    };
  }

  // -- operations (endpoint_actor.cpp) -----------------------------------------

  /// Takes an operation in whatever phase the endpoint is in.
  void take(op_request req, waiter w);

  /// Linked: sends the operation on its way.
  void start(op_request req, waiter w);

  /// Resolving or in a gap: holds the operation until the link is there.
  void wait_for_link(op_request req, waiter w);

  /// Gone: fails the operation with the reason.
  void refuse(op_request req, waiter w);

  /// One request per operation, answered by the owner.
  void at_owner(op_request req, waiter w);

  /// Sends the request of pending operation `op` (`again` after a resume).
  void issue(uint64_t op, bool again);

  void arm_deadline(uint64_t op, const op_request& req);
  void finish(uint64_t op, op_result&& res);
  void saw_lease(uint64_t id);
  static void deliver(waiter& w, op_result&& res);

  /// Holds an operation for credit or a value; a try goes to the owner.
  /// Returns whether it is held.
  bool hold(queue<held_op>& queue, op_request req, waiter w);

  /// Tells threads how many operations wait here, so they queue behind.
  void sync_waiters();

  void deadline_passed(uint64_t op);
  void fail_held(queue<held_op>& xs, const caf::error& err);

  /// Answers everything waiting. `owner_died`: sends already at the owner
  /// are in doubt, not failed.
  void fail_all(const caf::error& err, bool owner_died = false);

  static caf::error deadline_error();
  static caf::error in_doubt();

  /// Runs `fn` on the shared flow state under its lock.
  template <class F>
  auto locked(F fn) -> std::invoke_result_t<F, flow&> {
    std::lock_guard<std::mutex> guard{flow_->mtx};
    return fn(*flow_);
  }

  void post_self(const nudges& n);

  /// Arms timer `atom` for idle_credit from now, once: while one is on its
  /// way, later calls do nothing (a timer per batch costs the clock thread
  /// a wake-up each; measured: thousands a second). It carries the flow
  /// counter `count` reads, so that its handler sees whether anything
  /// happened meanwhile.
  template <class Atom, class Count>
  void arm_once(bool& armed, Atom atom, Count count) {
    if (armed)
      return;
    armed = true;
    delayed_send(this, idle_credit, atom, locked(count));
  }

  // -- sending on credit (credit.cpp) ------------------------------------------

  void send_on_credit(op_request req, waiter w);
  void want_credit();
  void add_credit(uint64_t granted, uint64_t last_seq);
  void flush();
  void send_batch(std::vector<envelope> batch);
  void confirmed(uint64_t last_seq);
  void schedule_idle_check();
  void idle_check(uint64_t epoch);
  void return_credit();

  // -- fetching ahead (prefetch.cpp) ------------------------------------------

  void receive_fetched(op_request req, waiter w);
  void hand_to(const op_request& req, waiter& w, envelope v, bool ack = false);
  void fetch();
  void fetched(uint64_t op, std::chrono::steady_clock::time_point fresh_until,
               std::vector<envelope>& values);
  void schedule_unread_check();
  void return_unread(uint64_t taken_then);
  void give_back_unread(std::vector<uint64_t> ids);
  void return_stale();
  bool consuming();

  // -- the session: resolving, gaps, redial, resume (session.cpp) -------------

  void resolve();
  void resolved(caf::actor& ch, const std::string& type_name,
                uint64_t max_size);
  void release_held();
  void end_session(caf::error why);
  void link_lost();
  void redial_later();
  caf::timespan jittered(caf::timespan backoff);
  void redial();
  void ask_resume();
  bool has_state();
  void resume(uint64_t last_seq, uint64_t reserved,
              const std::vector<uint64_t>& leases);
  void report(link_event::kind what, uint64_t replayed);

  // -- state -------------------------------------------------------------------

  phase phase_ = phase::linked;
  /// The owner's channel actor (a proxy if it lives on another node); null
  /// while resolving.
  caf::actor channel_;
  /// Stamped on every value sent, so that the owner de-duplicates replays.
  uint64_t id_;
  uint64_t next_op_ = 1;
  /// Requests at the owner, verdict not yet back.
  std::unordered_map<uint64_t, sent_op> pending_;
  /// Why the session ended (gone).
  caf::error gone_;
  resolver resolver_;
  /// The directory was asked (resolving starts on first use).
  bool resolve_asked_ = false;
  /// Operations waiting for the link (resolving, in a gap).
  queue<held_op> held_;
  std::vector<caf::typed_response_promise<caf::actor>> channel_waiters_;

  // Capacity N >= 1: credit and batches (sending), fetched values
  // (receiving); the state threads share lives in flow_.
  flow_ptr flow_;
  size_t capacity_;
  caf::timespan stale_after_;
  /// A reserve is out, and whether it asks for one slot at once.
  bool reserving_ = false;
  bool urgent_ = false;
  /// An idle_atom / unread_check_atom timer is on its way.
  bool idle_check_armed_ = false;
  bool unread_check_armed_ = false;
  /// The owner tops our credit up (see grant_atom) until we unreserve.
  bool streaming_ = false;
  queue<held_op> credit_waiters_;
  queue<held_op> get_waiters_;
  /// A get_many is out, under this operation id.
  bool fetching_ = false;
  uint64_t fetch_op_ = 0;
  /// flow::taken at the last fetch.
  uint64_t last_taken_ = 0;

  // Broken links: where to redial, and what a resume must settle.
  std::string where_;
  local_node node_;
  caf::node_id owner_node_;
  /// Counts broken links: answers to requests sent before the last one are
  /// dropped (on_this_link), and so are timers of earlier gaps.
  uint64_t link_ = 0;
  /// Counts redial and resume attempts in a gap: only the latest counts.
  uint64_t attempt_ = 0;
  std::chrono::steady_clock::time_point gap_since_;
  caf::timespan backoff_{0};
  /// put_batch messages (with the last sequence number in each) the owner
  /// has not confirmed.
  queue<std::pair<uint64_t, caf::message>> unconfirmed_;
  /// Leases returned unread (tagged with the next operation id then) that
  /// the owner may not have seen yet.
  queue<std::pair<uint64_t, std::vector<uint64_t>>> returned_;
  /// The highest lease id received: the owner hands leases out in id order
  /// and one link keeps message order, so after a broken link any lease of
  /// ours above it never arrived.
  uint64_t max_seen_ = 0;
  /// Sends given up during a gap: withdrawn at the owner on resume.
  std::vector<uint64_t> withdrawn_;
};

} // namespace netchan::detail
