// The endpoint actor's session, step by step and deterministically, on
// CAF's test_coordinator: the channel's owner and the node's directory are
// scripted actors that record what they hear and answer only when the test
// says so, and a broken link is the down message a proxy would send
// (remote_link_unreachable) while the owner lives on. So every transition
// (resolving -> linked -> in_gap -> linked | gone) and every settling rule
// of a resume is exact, with no sockets and no real time.
#define BOOST_TEST_MODULE endpoint
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/send.hpp>

#include "endpoint/endpoint_actor.hpp"
#include "netchan/config.hpp"
#include "netchan/errc.hpp"
#include "node/directory.hpp"
#include "wire/batch.hpp"
#include "wire/protocol.hpp"

using namespace netchan;
using namespace netchan::detail;
using namespace std::chrono_literals;

namespace {

payload to_payload(const std::string& s) {
  return payload{s.data(), s.size()};
}

std::string join(const std::vector<uint64_t>& xs) {
  std::string out;
  for (auto x : xs)
    out += (out.empty() ? "" : ",") + std::to_string(x);
  return out;
}

std::string text(const envelope& v) {
  return std::string(v.bytes.begin(), v.bytes.end());
}

/// What the scripted owner heard, in order, and the requests it has not
/// answered yet (by name: "reserve", "get_many", "resume", "put OP", ...).
struct owner_log {
  std::vector<std::string> heard;
  std::map<std::string, std::deque<caf::response_promise>> asks;

  /// Everything heard since the last call.
  std::vector<std::string> since_last() {
    std::vector<std::string> out(heard.begin() + static_cast<long>(seen),
                                 heard.end());
    seen = heard.size();
    return out;
  }

  caf::response_promise take(const std::string& name) {
    auto& q = asks[name];
    BOOST_REQUIRE_MESSAGE(!q.empty(), "the owner was not asked " + name);
    auto rp = q.front();
    q.pop_front();
    return rp;
  }

  size_t seen = 0;
};

using answer_atom = caf::atom_constant<caf::atom("t_answer")>;

/// A channel owner whose every answer the test gives (channel/ has the real
/// one).
caf::behavior scripted_owner(caf::event_based_actor* self,
                             std::shared_ptr<owner_log> log) {
  auto ask = [self, log](const std::string& name) {
    auto rp = self->make_response_promise();
    log->asks[name].push_back(rp);
    return rp;
  };
  auto hear = [log](std::string line) { log->heard.push_back(std::move(line)); };
  return {
    [=](put_atom, uint64_t op, envelope& v, uint8_t) {
      hear("put " + std::to_string(op) + " #" + std::to_string(v.seq) + " "
           + text(v));
      return ask("put " + std::to_string(op));
    },
    [=](get_atom, uint64_t op, bool) {
      hear("get " + std::to_string(op));
      return ask("get " + std::to_string(op));
    },
    [=](get_many_atom, uint64_t, uint64_t max, bool may_park) {
      hear("get_many " + std::to_string(max) + (may_park ? " park" : " now"));
      return ask("get_many");
    },
    [=](put_batch_atom, batch& values) {
      std::vector<uint64_t> seqs;
      for (auto& v : values.values)
        seqs.push_back(v.seq);
      hear("put_batch " + join(seqs));
    },
    [=](ack_many_atom, std::vector<uint64_t>& ids) {
      hear("ack_many " + join(ids));
    },
    [=](ack_atom, uint64_t id) { hear("ack " + std::to_string(id)); },
    [=](take_atom, uint64_t id) { hear("take " + std::to_string(id)); },
    [=](unread_atom, std::vector<uint64_t>& ids) {
      hear("unread " + join(ids));
    },
    [=](reserve_atom, uint64_t want, bool urgent, uint64_t) {
      hear("reserve " + std::to_string(want) + (urgent ? " urgent" : ""));
      return ask("reserve");
    },
    [=](hurry_atom) { hear("hurry"); },
    [=](unreserve_atom, uint64_t n) {
      hear("unreserve " + std::to_string(n));
    },
    [=](withdraw_atom, uint64_t op) {
      hear("withdraw " + std::to_string(op));
    },
    [=](resume_atom, uint64_t, std::vector<uint64_t>& puts) {
      hear("resume " + join(puts));
      return ask("resume");
    },
    [=](leave_atom) { hear("leave"); },
    // The test's answer to a request it was asked (deliver runs here, on
    // the owner's own turn, as a real owner answers).
    [=](answer_atom, const std::string& name, caf::message& reply) {
      log->take(name).deliver(std::move(reply));
    },
    [=](close_atom) {
      hear("close");
      return ask("close");
    },
  };
}

/// The node's directory: resolves the channel's address to the owner, or
/// fails while the test says the node is unreachable.
struct directory_log {
  caf::actor owner;
  std::string type_name = "item";
  uint64_t max_size = 1024;
  bool reachable = true;
  size_t resolves = 0;
};

caf::behavior scripted_directory(caf::event_based_actor*,
                                 std::shared_ptr<directory_log> log) {
  return {
    [=](resolve_atom, const std::string&)
      -> caf::result<caf::actor, std::string, uint64_t, uint64_t> {
      ++log->resolves;
      if (!log->reachable)
        return make_error(errc::peer_down, "unreachable (scripted)");
      return {log->owner, log->type_name, uint64_t{4}, log->max_size};
    },
  };
}

/// Verdicts by the test's operation number: "ok", "value PAYLOAD", or an
/// errc name.
using verdicts = std::map<int, std::string>;

caf::behavior client_actor(caf::event_based_actor* self, caf::actor ep,
                           std::shared_ptr<verdicts> log) {
  return {
    [=](int n, op_request& req) {
      (*log)[n] = "pending";
      self->request(ep, caf::infinite, req)
        .then(
          [=](op_result& res) {
            if (res.err)
              (*log)[n] = netchan::to_string(static_cast<errc>(res.err.code()));
            else if (req.kind == op_kind::get)
              (*log)[n] = "value " + text(res.value);
            else
              (*log)[n] = "ok";
          },
          [=](caf::error& err) { (*log)[n] = "error " + netchan::to_string(err); });
    },
  };
}

caf::actor_system_config& testing_config(caf::actor_system_config& cfg) {
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.inline-output", true);
  add_netchan_types(cfg);
  return cfg;
}

/// Redial backoff: the first redial comes within [10, 20] ms (jittered).
constexpr auto first_backoff = 20ms;
constexpr auto max_backoff = 160ms;
constexpr auto resume_timeout = 2s;

/// One endpoint on a scripted owner, on a node with a scripted directory.
struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  std::shared_ptr<owner_log> owner_heard = std::make_shared<owner_log>();
  caf::actor owner;
  std::shared_ptr<directory_log> dir = std::make_shared<directory_log>();
  caf::actor directory;
  std::shared_ptr<link_log> links = std::make_shared<link_log>();
  std::vector<link_event::kind> events;
  std::vector<uint64_t> replayed;
  flow_ptr fl = std::make_shared<flow>();
  caf::actor ep;
  std::shared_ptr<verdicts> log = std::make_shared<verdicts>();
  caf::actor client;
  int next = 1;

  /// `resolving`: the endpoint starts from the channel's address, as a
  /// handle that arrived inside a value does.
  explicit fixture(size_t capacity, bool resolving = false)
    : sys(testing_config(cfg)),
      sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {
    owner = sys.spawn(scripted_owner, owner_heard);
    dir->owner = owner;
    directory = sys.spawn(scripted_directory, dir);
    links->watch([this](const link_event& ev) {
      events.push_back(ev.what);
      replayed.push_back(ev.replayed);
    });
    local_node node;
    node.directory = directory;
    node.address = "127.0.0.1:1";
    node.resolve_timeout = 10s;
    node.resume_timeout = resume_timeout;
    node.reconnect_initial = first_backoff;
    node.reconnect_max = max_backoff;
    node.links = links;
    register_local_node(sys, node);
    fl->capacity = capacity;
    fl->owner_max = 1024;
    if (resolving)
      ep = spawn_resolving_endpoint(sys, "127.0.0.1:1/ch", "item", fl,
                                    directory, 10s, caf::error{});
    else
      ep = spawn_endpoint(sys, owner, fl, "127.0.0.1:1/ch");
    client = sys.spawn(client_actor, ep, log);
    sched.run();
  }

  ~fixture() {
    unregister_local_node(sys);
    for (auto& a : {client, ep, directory, owner})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  int call(op_request req) {
    auto n = next++;
    caf::anon_send(client, n, std::move(req));
    sched.run();
    return n;
  }

  int send(const std::string& payload, bool may_park = true) {
    op_request req;
    req.kind = op_kind::put;
    req.value = envelope{0, 0, false, 0, to_payload(payload)};
    req.may_park = may_park;
    return call(std::move(req));
  }

  int receive(bool lease = false) {
    op_request req;
    req.kind = op_kind::get;
    req.lease = lease;
    return call(std::move(req));
  }

  /// A send from a thread that finds credit: no message but the nudge.
  bool send_fast(const std::string& payload) {
    envelope v{0, 0, false, 0, to_payload(payload)};
    auto sent = detail::send_fast(*fl, ep, v);
    sched.run();
    return sent;
  }

  std::string verdict(int n) const {
    auto i = log->find(n);
    return i == log->end() ? "unknown" : i->second;
  }

  /// The link to the owner breaks: its proxy reports the owner down.
  void break_link() {
    caf::anon_send(ep, caf::down_msg{owner.address(),
                                     caf::exit_reason::remote_link_unreachable});
    sched.run();
  }

  /// Lets `t` pass, in steps of a millisecond: a timer armed while time
  /// passes fires in its turn.
  void advance(caf::timespan t) {
    for (auto left = t; left.count() > 0; left -= 1ms) {
      sched.advance_time(std::min<caf::timespan>(left, 1ms));
      sched.run();
    }
  }

  /// Lets the first redial happen and returns what the owner heard then.
  std::vector<std::string> redial() {
    advance(first_backoff);
    return owner_heard->since_last();
  }

  template <class... Ts>
  void answer(const std::string& name, Ts&&... xs) {
    caf::anon_send(owner, answer_atom::value, name,
                   caf::make_message(std::forward<Ts>(xs)...));
    sched.run();
  }

  /// Values leased to the endpoint: payload = lease id.
  static batch leased(std::vector<uint64_t> ids) {
    batch out;
    for (auto id : ids)
      out.values.push_back(
        envelope{7, id, false, id, to_payload(std::to_string(id))});
    return out;
  }

  void resume_known(uint64_t last_seq, uint64_t reserved,
                    std::vector<uint64_t> leases) {
    answer("resume", true, last_seq, reserved, std::move(leases));
  }
};

using lines = std::vector<std::string>;

} // namespace

BOOST_AUTO_TEST_CASE(a_broken_link_holds_operations_and_the_resume_sends_again_what_the_owner_lacks) {
  fixture f{4};
  auto first = f.send("a");
  BOOST_CHECK_EQUAL(f.verdict(first), "pending"); // waits for credit
  BOOST_CHECK(f.owner_heard->since_last() == lines{"reserve 4 urgent"});
  f.answer("reserve", uint64_t{4}, uint64_t{0});
  BOOST_CHECK_EQUAL(f.verdict(first), "ok");
  BOOST_CHECK(f.send_fast("b"));
  BOOST_CHECK(f.send_fast("c"));
  BOOST_CHECK(f.owner_heard->since_last() == lines({"put_batch 1", "put_batch 2", "put_batch 3"}));
  f.break_link();
  BOOST_CHECK(f.events == std::vector<link_event::kind>{link_event::kind::lost});
  BOOST_CHECK(!f.send_fast("d")); // no fast path in a gap
  auto tried = f.send("t", false);
  BOOST_CHECK_EQUAL(f.verdict(tried), "would_block");
  auto held = f.send("e");
  BOOST_CHECK_EQUAL(f.verdict(held), "pending");
  BOOST_CHECK(f.owner_heard->since_last().empty()); // nothing goes out
  BOOST_CHECK(f.redial() == lines{"resume "});
  // The owner has #1 and holds 3 slots for us: #2 and #3 go again, one slot
  // goes back, and the held send asks for credit of its own.
  f.resume_known(1, 3, {});
  BOOST_CHECK(f.owner_heard->since_last()
              == lines({"unreserve 1", "put_batch 2,3", "reserve 4 urgent"}));
  BOOST_CHECK(f.events.back() == link_event::kind::restored);
  BOOST_CHECK_EQUAL(f.replayed.back(), 2u);
  f.answer("reserve", uint64_t{1}, uint64_t{3});
  BOOST_CHECK_EQUAL(f.verdict(held), "ok");
  BOOST_CHECK(f.owner_heard->since_last() == lines{"put_batch 4"});
}

BOOST_AUTO_TEST_CASE(each_redial_waits_a_jittered_backoff_in_the_upper_half_of_its_doubling_bound) {
  fixture f{0};
  f.dir->reachable = false;
  f.break_link();
  // The millisecond of each redial (the directory fails at once, so the
  // next wait starts at the same millisecond).
  std::vector<long> at;
  auto seen = f.dir->resolves;
  for (long ms = 1; ms <= 700; ++ms) {
    f.advance(1ms);
    if (f.dir->resolves != seen) {
      at.push_back(ms);
      seen = f.dir->resolves;
    }
  }
  // Bounds 20, 40, 80, 160, 160 ms: each wait in [bound / 2, bound].
  std::vector<long> bound{20, 40, 80, 160, 160};
  BOOST_REQUIRE_GE(at.size(), bound.size());
  for (size_t i = 0; i < bound.size(); ++i) {
    auto wait = at[i] - (i == 0 ? 0 : at[i - 1]);
    BOOST_TEST_CONTEXT("redial " << i + 1 << " after " << wait << " ms") {
      BOOST_CHECK_GE(wait, bound[i] / 2);
      BOOST_CHECK_LE(wait, bound[i]);
    }
  }
}

BOOST_AUTO_TEST_CASE(resume_acks_takes_keeps_and_returns_each_lease_by_what_the_endpoint_knows) {
  fixture f{8};
  auto r1 = f.receive();
  BOOST_CHECK(f.owner_heard->since_last() == lines{"get_many 9 park"});
  f.answer("get_many", fixture::leased({1, 2, 3, 4}));
  BOOST_CHECK_EQUAL(f.verdict(r1), "value 1");
  auto r2 = f.receive(true); // leased by the application
  BOOST_CHECK_EQUAL(f.verdict(r2), "value 2");
  f.owner_heard->since_last();
  f.break_link();
  BOOST_CHECK(f.redial() == lines{"resume "});
  // The owner still lists 1 (our ack was lost with the link), 2 (held by
  // the application), 3 and 4 (fetched, not taken yet), and 5 (sent, never
  // arrived).
  f.resume_known(0, 0, {1, 2, 3, 4, 5});
  BOOST_CHECK(f.owner_heard->since_last()
              == lines({"ack_many 1", "take 2", "unread 5"}));
  BOOST_CHECK_EQUAL(f.replayed.back(), 2u); // the ack and the unread
  auto r3 = f.receive();
  BOOST_CHECK_EQUAL(f.verdict(r3), "value 3"); // kept across the gap
}

BOOST_AUTO_TEST_CASE(values_given_back_unread_before_the_break_are_given_back_again) {
  fixture f{8};
  auto r1 = f.receive();
  f.answer("get_many", fixture::leased({1, 2, 3}));
  BOOST_CHECK_EQUAL(f.verdict(r1), "value 1");
  f.advance(60ms); // nobody takes 2 and 3: they go back
  BOOST_CHECK(f.owner_heard->since_last()
              == lines({"get_many 9 park", "ack_many 1", "unread 2,3"}));
  f.break_link();
  f.redial();
  f.resume_known(0, 0, {2, 3}); // the owner never saw them come back
  BOOST_CHECK(f.owner_heard->since_last() == lines{"unread 2,3"});
}

BOOST_AUTO_TEST_CASE(an_answer_sent_before_the_break_is_dropped_and_the_request_goes_again) {
  fixture f{0};
  auto put = f.send("v");
  BOOST_CHECK(f.owner_heard->since_last() == lines{"put 1 #1 v"});
  f.break_link();
  // The old link's answer arrives late: the resume settles the send, not it.
  f.answer("put 1", make_error(errc::closed, "late (scripted)"));
  BOOST_CHECK_EQUAL(f.verdict(put), "pending");
  BOOST_CHECK(f.redial() == lines{"resume 1"});
  f.resume_known(0, 0, {});
  BOOST_CHECK(f.owner_heard->since_last() == lines{"put 1 #1 v"});
  f.answer("put 1", ok_atom::value);
  BOOST_CHECK_EQUAL(f.verdict(put), "ok");
}

BOOST_AUTO_TEST_CASE(a_gap_that_never_heals_ends_in_peer_down_at_the_resume_timeout) {
  fixture f{0};
  auto put = f.send("v");
  auto get_n = f.receive();
  f.owner_heard->since_last();
  f.dir->reachable = false;
  f.break_link();
  f.advance(resume_timeout - 1ms);
  BOOST_CHECK_EQUAL(f.verdict(put), "pending");
  BOOST_CHECK_GE(f.dir->resolves, 10u); // redialled all along
  f.advance(1ms);
  // The send was at the owner when the link broke: in doubt, not failed.
  BOOST_CHECK_EQUAL(f.verdict(put), "outcome_unknown");
  BOOST_CHECK_EQUAL(f.verdict(get_n), "peer_down");
  BOOST_CHECK(f.events.back() == link_event::kind::expired);
  BOOST_CHECK(f.owner_heard->since_last() == lines{"leave"});
  // Gone: every later operation fails at once, and nothing is sent.
  auto later = f.send("w");
  BOOST_CHECK_EQUAL(f.verdict(later), "peer_down");
  auto resolves = f.dir->resolves;
  f.advance(1s);
  BOOST_CHECK_EQUAL(f.dir->resolves, resolves);
  BOOST_CHECK(f.owner_heard->since_last().empty());
}

BOOST_AUTO_TEST_CASE(an_owner_that_ended_the_session_ends_it_here_if_it_held_anything) {
  fixture f{4};
  auto sent = f.send("a");
  f.answer("reserve", uint64_t{4}, uint64_t{0});
  BOOST_CHECK_EQUAL(f.verdict(sent), "ok");
  f.break_link();
  auto held = f.send("b");
  BOOST_CHECK(f.redial()
              == lines({"reserve 4 urgent", "put_batch 1", "resume "}));
  // It holds credit and a value the owner never confirmed: the session
  // cannot go on.
  f.answer("resume", false, uint64_t{0}, uint64_t{0}, std::vector<uint64_t>{});
  BOOST_CHECK_EQUAL(f.verdict(held), "peer_down");
  BOOST_CHECK(f.events.back() == link_event::kind::expired);
  BOOST_CHECK(f.owner_heard->since_last() == lines{"leave"});
}

BOOST_AUTO_TEST_CASE(an_endpoint_that_held_nothing_resumes_with_an_owner_that_forgot_it) {
  fixture f{4};
  f.break_link();
  f.redial();
  f.answer("resume", false, uint64_t{0}, uint64_t{0}, std::vector<uint64_t>{});
  BOOST_CHECK(f.events.back() == link_event::kind::restored);
  auto r = f.receive();
  BOOST_CHECK(f.owner_heard->since_last() == lines{"get_many 5 park"});
  f.answer("get_many", fixture::leased({9}));
  BOOST_CHECK_EQUAL(f.verdict(r), "value 9");
}

BOOST_AUTO_TEST_CASE(a_resolving_endpoint_asks_the_directory_on_first_use_and_holds_operations) {
  fixture f{0, true};
  BOOST_CHECK_EQUAL(f.dir->resolves, 0u); // not before it is used
  auto put = f.send("v");
  BOOST_CHECK_EQUAL(f.dir->resolves, 1u);
  // Held as operation 1 while resolving, sent as operation 2.
  BOOST_CHECK(f.owner_heard->since_last() == lines{"put 2 #1 v"});
  f.answer("put 2", ok_atom::value);
  BOOST_CHECK_EQUAL(f.verdict(put), "ok");
}

BOOST_AUTO_TEST_CASE(a_resolving_endpoint_of_the_wrong_type_fails_every_operation) {
  fixture f{0, true};
  f.dir->type_name = "other";
  auto put = f.send("v");
  BOOST_CHECK_EQUAL(f.verdict(put), "type_mismatch");
  auto again = f.receive();
  BOOST_CHECK_EQUAL(f.verdict(again), "type_mismatch");
  BOOST_CHECK_EQUAL(f.dir->resolves, 1u);
  BOOST_CHECK(f.owner_heard->since_last().empty());
}
