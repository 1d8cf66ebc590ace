// The channel's semantics as a plain class, driven call by call: no actor
// runs, no message travels. A recording callee writes down everything the
// channel says, one line each, and the invariant is recounted after every
// call. (Parties are actor addresses: a few idle actors lend theirs.)
#define BOOST_TEST_MODULE channel_state
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "channel/channel_state.hpp"
#include "netchan/config.hpp"
#include "netchan/errc.hpp"

using namespace netchan;
using namespace netchan::detail;
namespace bdata = boost::unit_test::data;

namespace {

payload to_payload(const std::string& s) {
  return payload{s.data(), s.size()};
}

/// Lines as heard_all() joins them.
template <class... Ts>
std::string join_lines(const Ts&... xs) {
  std::string joined;
  ((joined += (joined.empty() ? "" : " | ") + std::string{xs}), ...);
  return joined;
}


std::string errc_name(const caf::error& err) {
  return err ? netchan::to_string(static_cast<errc>(err.code()))
             : std::string{"ok"};
}

std::string text(const envelope& e) {
  return std::string(e.bytes.begin(), e.bytes.end());
}

/// Writes down what the channel says: "sent A#1 ok", "received B#2 x
/// lease=1", "claim S op=1 #1", ...
struct recorder : channel_callee {
  std::map<party_id, std::string> names;
  std::vector<std::string> said;
  /// The last lease handed to each party.
  std::map<std::string, uint64_t> last_lease;
  std::vector<uint64_t> expiring;

  std::string name(const party_id& who) {
    auto i = names.find(who);
    return i != names.end() ? i->second : "?";
  }

  void say(std::string line) {
    said.push_back(std::move(line));
  }

  std::string op_of(const party_id& who, uint64_t op) {
    return name(who) + "#" + std::to_string(op);
  }

  void sent(const party_id& to, uint64_t op, reply&,
            caf::error err) override {
    say("sent " + op_of(to, op) + " " + errc_name(err));
  }
  void received(const party_id& to, uint64_t op, reply&,
                envelope v) override {
    last_lease[name(to)] = v.lease;
    say("received " + op_of(to, op) + " " + text(v)
        + (v.redelivered ? " redelivered" : ""));
  }
  void received_many(const party_id& to, uint64_t op, reply&,
                     std::vector<envelope> vs) override {
    std::string line = "received " + op_of(to, op);
    for (auto& v : vs) {
      line += " " + text(v);
      last_lease[name(to)] = v.lease;
    }
    say(line);
  }
  void receive_failed(const party_id& to, uint64_t op, reply&,
                      caf::error err) override {
    say("received " + op_of(to, op) + " " + errc_name(err));
  }
  void credited(const party_id& to, uint64_t op, reply&, uint64_t granted,
                uint64_t) override {
    say("credited " + op_of(to, op) + " " + std::to_string(granted));
  }
  void credit_failed(const party_id& to, uint64_t op, reply&,
                     caf::error err) override {
    say("credited " + op_of(to, op) + " " + errc_name(err));
  }
  void refuse(const party_id& to, uint64_t seq, caf::error err) override {
    say("refused " + name(to) + " seq=" + std::to_string(seq) + " "
        + errc_name(err));
  }
  void grant(const party_id& to, uint64_t granted, uint64_t) override {
    say("granted " + name(to) + " " + std::to_string(granted));
  }
  void offer_answer(const party_id& s, uint64_t op, offer_state st,
                    caf::error err) override {
    const char* what = st == offer_state::parked        ? "parked"
                       : st == offer_state::would_block ? "would_block"
                                                        : "failed";
    say(std::string{what} + " " + op_of(s, op)
        + (err ? " " + errc_name(err) : ""));
  }
  void claim(const party_id& s, uint64_t op, uint64_t id) override {
    say("claim " + op_of(s, op) + " #" + std::to_string(id));
  }
  void claim_end(const party_id& s, uint64_t id, bool confirmed) override {
    say("end " + name(s) + " #" + std::to_string(id)
        + (confirmed ? " confirmed" : " released"));
  }
  void offer_value(const party_id& s, uint64_t op, envelope v) override {
    last_lease[name(s)] = v.lease;
    say("value " + op_of(s, op) + " " + text(v));
  }
  void offer_done(const party_id& s, uint64_t op, caf::error err) override {
    say("done " + op_of(s, op) + " " + errc_name(err));
  }
  void watch(const party_id&) override {
  }
  void expire_later(uint64_t generation) override {
    expiring.push_back(generation);
  }
};

caf::actor_system_config& testing_config(caf::actor_system_config& cfg) {
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.inline-output", true);
  add_netchan_types(cfg);
  return cfg;
}

/// A channel of the given capacity, parties A, B, C (endpoints) and S, T
/// (selectors), and the checks every test needs.
struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  std::vector<caf::actor> idle;
  recorder out;
  channel_state ch;
  party_id A, B, C, S, T;
  uint64_t next_op = 1;
  std::map<std::string, uint64_t> next_seq;

  explicit fixture(size_t capacity, caf::timespan resume = caf::timespan{0})
    : sys(testing_config(cfg)), ch(spec(capacity, resume), out) {
    for (auto* p : {&A, &B, &C, &S, &T}) {
      idle.push_back(sys.spawn([](caf::event_based_actor*) -> caf::behavior {
        return {[](int) {}};
      }));
      *p = idle.back().address();
    }
    out.names = {{A, "A"}, {B, "B"}, {C, "C"}, {S, "S"}, {T, "T"}};
  }

  ~fixture() {
    for (auto& a : idle)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler()).run();
  }

  static channel_spec spec(size_t capacity, caf::timespan resume) {
    channel_spec s;
    s.name = "c";
    s.type_name = "item";
    s.capacity = capacity;
    s.max_message_size = 64;
    s.resume_timeout = resume;
    return s;
  }

  envelope value(const party_id& from, const std::string& payload) {
    auto sender = from.id();
    return envelope{sender, ++next_seq[out.name(from)], false, 0,
                    to_payload(payload)};
  }

  /// Checks the invariant; returns what the channel said since last time.
  std::vector<std::string> heard() {
    auto off = ch.invariant_violation();
    BOOST_CHECK_MESSAGE(off.empty(), off);
    auto result = std::move(out.said);
    out.said.clear();
    return result;
  }

  /// What the channel said since last time, one " | " between lines.
  std::string heard_all() {
    std::string joined;
    for (auto& line : heard())
      joined += (joined.empty() ? "" : " | ") + line;
    return joined;
  }

  std::string heard_one() {
    auto h = heard();
    BOOST_REQUIRE_EQUAL(h.size(), 1u);
    return h.front();
  }

  uint64_t put(const party_id& from, const std::string& payload,
               put_mode mode = put_mode::park) {
    auto op = next_op++;
    ch.put(from, op, value(from, payload), mode, reply{});
    return op;
  }

  uint64_t get(const party_id& from, bool may_park = true) {
    auto op = next_op++;
    ch.get(from, op, false, 1, may_park, reply{});
    return op;
  }

  uint64_t reserve(const party_id& from, uint64_t want, bool urgent = true) {
    auto op = next_op++;
    ch.reserve(from, op, want, urgent, from.id(), reply{});
    return op;
  }

  std::string op(const std::string& who, uint64_t n) {
    return who + "#" + std::to_string(n);
  }

  uint64_t lease_of(const std::string& who) {
    return out.last_lease.at(who);
  }
};

const std::vector<size_t> capacities{0, 1, 16};

} // namespace

// -- send and receive ---------------------------------------------------------

BOOST_DATA_TEST_CASE(every_value_goes_to_one_receiver_in_its_senders_order,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto g1 = f.get(f.B);
  auto g2 = f.get(f.C);
  auto p1 = f.put(f.A, "1");
  auto p2 = f.put(f.A, "2");
  auto h = f.heard();
  auto said = [&](const std::string& line) {
    return std::count(h.begin(), h.end(), line) == 1;
  };
  BOOST_CHECK(said("received " + f.op("B", g1) + " 1"));
  if (cap == 0) {
    // Released only when each receiver has taken its value.
    BOOST_CHECK(said("received " + f.op("C", g2) + " 2"));
    BOOST_CHECK(!said("sent " + f.op("A", p1) + " ok"));
    f.ch.take(f.lease_of("B"));
    BOOST_CHECK_EQUAL(f.heard_one(), "sent " + f.op("A", p1) + " ok");
    f.ch.take(f.lease_of("C"));
    BOOST_CHECK_EQUAL(f.heard_one(), "sent " + f.op("A", p2) + " ok");
  }
  BOOST_CHECK(!f.ch.settle(f.lease_of("B"), false));
  auto after = f.heard();
  h.insert(h.end(), after.begin(), after.end());
  BOOST_CHECK(said("received " + f.op("C", g2) + " 2"));
  BOOST_CHECK(cap == 0 || said("sent " + f.op("A", p2) + " ok"));
  BOOST_CHECK(!f.ch.settle(f.lease_of("C"), false));
  BOOST_CHECK(is(f.ch.settle(f.lease_of("C"), false), errc::lease_settled));
  BOOST_CHECK_EQUAL(f.ch.stats().received, 2u);
}

BOOST_AUTO_TEST_CASE(an_unbuffered_value_whose_receiver_dies_before_taking_it_goes_to_the_next) {
  fixture f{0};
  auto p = f.put(f.A, "x");
  auto g = f.get(f.B);
  BOOST_CHECK_EQUAL(f.heard_one(), "received " + f.op("B", g) + " x");
  f.ch.down(f.B, false);
  BOOST_CHECK(f.heard().empty()); // the sender waits again, at the head
  auto g2 = f.get(f.C);
  BOOST_CHECK_EQUAL(f.heard_one(),
                    "received " + f.op("C", g2) + " x redelivered");
  f.ch.take(f.lease_of("C"));
  BOOST_CHECK_EQUAL(f.heard_one(), "sent " + f.op("A", p) + " ok");
}

BOOST_DATA_TEST_CASE(try_operations_never_wait, bdata::make(capacities), cap) {
  fixture f{cap};
  BOOST_CHECK(f.heard().empty());
  auto g = f.get(f.B, false);
  BOOST_CHECK_EQUAL(f.heard_one(), "received " + f.op("B", g) + " would_block");
  for (size_t i = 0; i < cap; ++i)
    f.put(f.A, "fill");
  f.heard();
  auto p = f.put(f.A, "x", put_mode::try_once);
  BOOST_CHECK_EQUAL(f.heard_one(), "sent " + f.op("A", p) + " would_block");
  BOOST_CHECK_EQUAL(f.ch.stats().parked_senders, 0u);
}

BOOST_AUTO_TEST_CASE(a_leased_value_holds_its_slot_and_a_released_one_comes_back_first) {
  fixture f{1};
  f.put(f.A, "1");
  auto g = f.get(f.B);
  f.heard();
  auto waiting = f.put(f.A, "2");
  BOOST_CHECK(f.heard().empty()); // the lease holds the only slot
  BOOST_CHECK(!f.ch.settle(f.lease_of("B"), true));
  BOOST_CHECK(f.heard().empty()); // back in the buffer, still full
  auto g2 = f.get(f.C);
  BOOST_CHECK_EQUAL(f.heard_one(), "received " + f.op("C", g2) + " 1 redelivered");
  f.ch.ack_many({f.lease_of("C")});
  BOOST_CHECK_EQUAL(f.heard_one(), "sent " + f.op("A", waiting) + " ok");
  static_cast<void>(g);
}

// -- credit -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(credit_covers_free_slots_only_and_tops_up_a_streaming_sender) {
  fixture f{8};
  auto r = f.reserve(f.A, 8, false);
  BOOST_CHECK_EQUAL(f.heard_one(), "credited " + f.op("A", r) + " 8");
  auto r2 = f.reserve(f.B, 1);
  BOOST_CHECK(f.heard().empty()); // nothing free: it waits
  std::vector<envelope> batch;
  for (int i = 0; i < 4; ++i)
    batch.push_back(f.value(f.A, std::to_string(i)));
  f.ch.put_batch(f.A, batch);
  BOOST_CHECK(f.heard().empty());
  f.ch.unreserve(f.A, 4); // A stops streaming: its rest is free again
  BOOST_CHECK_EQUAL(f.heard_one(), "credited " + f.op("B", r2) + " 1");
  auto stats = f.ch.stats();
  BOOST_CHECK_EQUAL(stats.buffered, 4u);
  BOOST_CHECK_EQUAL(stats.reserved, 1u);
  // B streams (its reserve registered it): once it has used its credit,
  // it is topped up unasked, to the window it asked for.
  std::vector<envelope> one{f.value(f.B, "b")};
  f.ch.put_batch(f.B, one);
  BOOST_CHECK_EQUAL(f.heard_one(), "granted B 1");
}

BOOST_AUTO_TEST_CASE(a_value_without_credit_is_refused_to_its_sender) {
  fixture f{2};
  std::vector<envelope> batch{f.value(f.A, "x")};
  f.ch.put_batch(f.A, batch);
  BOOST_CHECK_EQUAL(f.heard_one(), "refused A seq=1 invalid_argument");
}

// -- select -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_refused_receive_offer_puts_its_value_back_at_the_head) {
  fixture f{4};
  f.put(f.A, "1");
  f.put(f.A, "2");
  f.heard();
  f.ch.offer_get(f.S, 1, true);
  BOOST_CHECK_EQUAL(f.heard_one(), "claim S#1 #1");
  BOOST_CHECK_EQUAL(f.ch.len(), 1u); // "1" is set aside for the claim
  f.ch.claim_reply(f.S, 1, false);
  BOOST_CHECK(f.heard().empty());
  auto g = f.get(f.B);
  BOOST_CHECK_EQUAL(f.heard_one(), "received " + f.op("B", g) + " 1");
}

BOOST_AUTO_TEST_CASE(a_granted_send_offer_takes_its_slot) {
  fixture f{1};
  f.ch.offer_put(f.S, 1, f.value(f.S, "x"), true);
  BOOST_CHECK_EQUAL(f.heard_one(), "claim S#1 #1");
  f.ch.claim_reply(f.S, 1, true);
  BOOST_CHECK_EQUAL(f.heard_all(), join_lines("end S #1 confirmed", "done S#1 ok"));
  BOOST_CHECK_EQUAL(f.ch.len(), 1u);
}

BOOST_AUTO_TEST_CASE(two_offers_at_capacity_0_are_claimed_in_one_global_order) {
  fixture f{0};
  f.ch.offer_put(f.T, 1, f.value(f.T, "x"), true);
  BOOST_CHECK_EQUAL(f.heard_one(), "parked T#1");
  f.ch.offer_get(f.S, 1, true);
  // S is older than T, so S's address orders first: S is asked first.
  BOOST_CHECK_EQUAL(f.heard_one(), "claim S#1 #1");
  f.ch.claim_reply(f.S, 1, true);
  BOOST_CHECK_EQUAL(f.heard_one(), "claim T#1 #1");
  f.ch.claim_reply(f.T, 1, true);
  BOOST_CHECK_EQUAL(f.heard_all(), join_lines("end S #1 confirmed", "end T #1 confirmed",
                                      "value S#1 x"));
  f.ch.take(f.lease_of("S"));
  BOOST_CHECK_EQUAL(f.heard_one(), "done T#1 ok");
}

// Issue 15, at the level of the channel: the second selector of a claim
// vanishes while the first has not answered; the first hears the release,
// and a grant that crosses it is released again.
BOOST_AUTO_TEST_CASE(a_claim_dropped_for_a_vanished_selector_releases_the_one_asked) {
  fixture f{0};
  f.ch.offer_put(f.S, 1, f.value(f.S, "x"), true);
  f.ch.offer_get(f.T, 1, true);
  BOOST_CHECK_EQUAL(f.heard_all(), join_lines("parked S#1", "claim S#1 #1", "parked T#1"));
  f.ch.down(f.T, false);
  BOOST_CHECK_EQUAL(f.heard_one(), "end S #1 released");
  f.ch.claim_reply(f.S, 1, true);
  BOOST_CHECK_EQUAL(f.heard_one(), "end S #1 released");
  auto g = f.get(f.B);
  BOOST_CHECK_EQUAL(f.heard_one(), "claim S#1 #2");
  f.ch.claim_reply(f.S, 2, true);
  BOOST_CHECK_EQUAL(f.heard_all(), join_lines("end S #2 confirmed",
                                      "received " + f.op("B", g) + " x"));
}

BOOST_AUTO_TEST_CASE(a_withdrawn_offer_leaves_without_a_word) {
  fixture f{0};
  f.ch.offer_get(f.S, 1, true);
  f.heard();
  f.ch.withdraw(f.S, 1);
  BOOST_CHECK(f.heard().empty());
  auto p = f.put(f.A, "x", put_mode::try_once);
  BOOST_CHECK_EQUAL(f.heard_one(), "sent " + f.op("A", p) + " would_block");
}

// -- close --------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(close_with_everything_in_flight_ends_each_party_once) {
  fixture f{2};
  auto r = f.reserve(f.A, 1);
  f.put(f.B, "1");
  auto g = f.get(f.C); // takes "1", leased
  auto waiting = f.put(f.B, "2"); // the reserve and the lease hold the slots
  auto credit = f.reserve(f.B, 1);
  f.ch.offer_put(f.S, 1, f.value(f.S, "s"), true);
  f.heard();
  BOOST_CHECK(!f.ch.close());
  auto h = f.heard();
  BOOST_CHECK(std::count(h.begin(), h.end(), "sent " + f.op("B", waiting) + " closed"));
  BOOST_CHECK(std::count(h.begin(), h.end(), "credited " + f.op("B", credit) + " closed"));
  BOOST_CHECK(std::count(h.begin(), h.end(), "failed S#1 closed"));
  BOOST_CHECK(is(f.ch.close(), errc::closed));
  // Credit granted before the close is still good for one value.
  std::vector<envelope> late{f.value(f.A, "late")};
  f.ch.put_batch(f.A, late);
  auto g2 = f.get(f.B);
  BOOST_CHECK_EQUAL(f.heard_one(), "received " + f.op("B", g2) + " late");
  auto g3 = f.get(f.B);
  BOOST_CHECK(f.heard().empty()); // leases are out: values may come back
  BOOST_CHECK(!f.ch.settle(f.lease_of("C"), false));
  BOOST_CHECK(f.heard().empty());
  BOOST_CHECK(!f.ch.settle(f.lease_of("B"), false));
  BOOST_CHECK_EQUAL(f.heard_one(), "received " + f.op("B", g3) + " closed");
  static_cast<void>(r);
  static_cast<void>(g);
}

BOOST_AUTO_TEST_CASE(shutting_down_answers_every_waiting_party) {
  fixture f{0};
  auto p = f.put(f.A, "in flight");
  auto g = f.get(f.B);
  auto parked = f.put(f.C, "parked");
  f.heard();
  f.ch.shut_down();
  BOOST_CHECK_EQUAL(f.heard_all(), join_lines("sent " + f.op("C", parked) + " peer_down",
                           "sent " + f.op("A", p) + " outcome_unknown"));
  static_cast<void>(g);
}

// -- broken links and resume --------------------------------------------------

BOOST_AUTO_TEST_CASE(a_suspended_party_keeps_its_leases_and_sends_and_settles_on_resume) {
  fixture f{2, std::chrono::seconds{1}};
  auto r = f.reserve(f.A, 1);
  f.put(f.B, "1");
  f.get(f.A); // A leases "1"
  auto g = f.get(f.A); // waits
  f.heard();
  f.ch.down(f.A, true); // link broke
  BOOST_CHECK_EQUAL(f.out.expiring.size(), 1u);
  BOOST_CHECK(f.heard().empty()); // its receive is dropped without a word
  auto st = f.ch.stats();
  BOOST_CHECK_EQUAL(st.leased, 1u);   // kept
  BOOST_CHECK_EQUAL(st.reserved, 0u); // its credit went back
  BOOST_CHECK_EQUAL(st.parked_receivers, 0u);
  auto back = f.ch.resume(f.A, f.A.id(), {});
  BOOST_CHECK(back.known);
  BOOST_CHECK_EQUAL(back.reserved, 1u); // the credit it held, back
  BOOST_CHECK_EQUAL(back.leases.size(), 1u);
  f.ch.expire(f.out.expiring.front()); // too late: resumed
  BOOST_CHECK_EQUAL(f.ch.stats().leased, 1u);
  static_cast<void>(r);
  static_cast<void>(g);
}

namespace {

/// A puts "x" (its first value), its link breaks, it resumes saying it
/// sends that put again, and does: the op id of the put.
uint64_t put_across_a_resume(fixture& f) {
  auto p = f.put(f.A, "x");
  f.ch.down(f.A, true);
  BOOST_CHECK(f.ch.resume(f.A, f.A.id(), {p}).known);
  f.heard();
  // The same operation again, with the same value and sequence number.
  f.ch.put(f.A, p, envelope{f.A.id(), 1, false, 0, to_payload("x")},
           put_mode::park, reply{});
  return p;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_reissued_put_still_waiting_is_adopted_not_parked_twice) {
  fixture f{0, std::chrono::seconds{1}};
  auto p = put_across_a_resume(f);
  BOOST_CHECK(f.heard().empty());
  BOOST_CHECK_EQUAL(f.ch.stats().parked_senders, 1u);
  auto g = f.get(f.B);
  f.ch.take(f.lease_of("B"));
  BOOST_CHECK_EQUAL(f.heard_all(), join_lines("received " + f.op("B", g) + " x",
                                      "sent " + f.op("A", p) + " ok"));
}

BOOST_AUTO_TEST_CASE(a_reissued_put_already_taken_is_answered_ok_not_taken_twice) {
  fixture f{1, std::chrono::seconds{1}};
  auto p = put_across_a_resume(f);
  BOOST_CHECK_EQUAL(f.heard_one(), "sent " + f.op("A", p) + " ok");
  BOOST_CHECK_EQUAL(f.ch.len(), 1u);
}

BOOST_AUTO_TEST_CASE(an_expired_session_is_gone_its_leases_redelivered) {
  fixture f{1, std::chrono::seconds{1}};
  f.put(f.B, "1");
  f.get(f.A);
  f.heard();
  f.ch.down(f.A, true);
  f.ch.expire(f.out.expiring.front());
  auto g = f.get(f.C);
  BOOST_CHECK_EQUAL(f.heard_one(), "received " + f.op("C", g) + " 1 redelivered");
  BOOST_CHECK(!f.ch.resume(f.A, f.A.id(), {}).known);
}

BOOST_AUTO_TEST_CASE(a_node_back_as_a_new_process_ends_its_sessions_at_once) {
  fixture f{1, std::chrono::seconds{1}};
  f.put(f.B, "1");
  f.get(f.A);
  f.heard();
  f.ch.down(f.A, true);
  f.ch.node_gone(f.A.node());
  BOOST_CHECK_EQUAL(f.ch.stats().requeued, 1u);
  // Later breaks of that node's parties end them at once.
  f.get(f.B);
  f.heard();
  f.ch.down(f.B, true);
  BOOST_CHECK_EQUAL(f.out.expiring.size(), 1u);
  BOOST_CHECK_EQUAL(f.ch.stats().requeued, 2u);
}
