// The channel actor's contract, step by step and deterministically, on CAF's
// test_coordinator: every message runs only when the test says so, so each
// interleaving of put, get, take, ack, withdraw and close below is exact.
#define BOOST_TEST_MODULE channel_actor
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/send.hpp>

#include "channel/channel_actor.hpp"
#include "netchan/config.hpp"
#include "netchan/envelope.hpp"
#include "netchan/errc.hpp"
#include "netchan/stats.hpp"
#include "wire/batch.hpp"
#include "wire/protocol.hpp"

using namespace netchan;
using namespace netchan::detail;
namespace bdata = boost::unit_test::data;

namespace {

payload to_payload(const std::string& s) {
  return payload{s.data(), s.size()};
}

/// What a client saw: the verdict of one operation.
struct verdict {
  std::string what; // "ok", "value", or an errc name
  uint64_t lease = 0;
  envelope value;
  uint64_t count = 0;
};

using verdicts = std::map<uint64_t, verdict>;

/// A client actor: forwards the test's commands to the channel and records
/// each verdict under the operation id.
caf::behavior client_actor(caf::event_based_actor* self, caf::actor ch,
                           std::shared_ptr<verdicts> log) {
  auto fail = [log](uint64_t op) {
    return [log, op](caf::error& err) {
      (*log)[op] = verdict{netchan::to_string(static_cast<errc>(err.code())),
                           0, {}, 0};
    };
  };
  auto ok = [log](uint64_t op) {
    return [log, op](ok_atom) { (*log)[op] = verdict{"ok", 0, {}, 0}; };
  };
  return {
    [=](put_atom, uint64_t op, envelope& value, uint8_t mode) {
      self->request(ch, caf::infinite, put_atom::value, op, value, mode)
        .then(ok(op), fail(op));
    },
    [=](get_atom, uint64_t op, bool may_park) {
      self->request(ch, caf::infinite, get_atom::value, op, may_park)
        .then(
          [log, op](uint64_t lease, envelope& value) {
            (*log)[op] = verdict{"value", lease, value, 0};
          },
          fail(op));
    },
    [=](commit_atom, uint64_t op, uint64_t lease) {
      self->request(ch, caf::infinite, commit_atom::value, lease)
        .then(ok(op), fail(op));
    },
    [=](release_atom, uint64_t op, uint64_t lease) {
      self->request(ch, caf::infinite, release_atom::value, lease)
        .then(ok(op), fail(op));
    },
    [=](close_atom, uint64_t op) {
      self->request(ch, caf::infinite, close_atom::value)
        .then(ok(op), fail(op));
    },
    [=](reserve_atom, uint64_t op, uint64_t want) {
      self->request(ch, caf::infinite, reserve_atom::value, want, true,
                    uint64_t{0})
        .then([log, op](uint64_t n, uint64_t) {
                (*log)[op] = verdict{"ok", 0, {}, n};
              },
              fail(op));
    },
    [=](take_atom, uint64_t lease) { self->send(ch, take_atom::value, lease); },
    [=](ack_atom, uint64_t lease) { self->send(ch, ack_atom::value, lease); },
    [=](withdraw_atom, uint64_t op) {
      self->send(ch, withdraw_atom::value, op);
    },
    [=](unreserve_atom, uint64_t n) {
      self->send(ch, unreserve_atom::value, n);
    },
    [=](put_batch_atom, batch& values) {
      self->send(ch, put_batch_atom::value, values);
    },
    // Credit the owner tops up unasked: tallied under op 0.
    [=](grant_atom, uint64_t n, uint64_t) { (*log)[0].count += n; },
  };
}

/// What a scripted selector heard from the owner, in order: "claim OP #ID",
/// "end #ID confirmed|released", "parked OP", "would_block OP",
/// "failed OP ERRC", "value OP PAYLOAD", "done OP ok|ERRC".
using hearing = std::vector<std::string>;

/// A selector whose every move the test makes (select/selector.cpp has the real
/// one): it offers cases and answers claims only when told, and records
/// what the owner says to it.
caf::behavior scripted_selector(caf::event_based_actor* self, caf::actor ch,
                                std::shared_ptr<hearing> log) {
  auto errc_name = [](const caf::error& err) {
    return err ? netchan::to_string(static_cast<errc>(err.code()))
               : std::string{"ok"};
  };
  return {
    [=](offer_put_atom, uint64_t op, envelope& value) {
      self->send(ch, offer_put_atom::value, op, std::move(value), true);
    },
    [=](offer_get_atom, uint64_t op) {
      self->send(ch, offer_get_atom::value, op, true);
    },
    [=](claim_reply_atom, uint64_t id, bool granted) {
      self->send(ch, claim_reply_atom::value, id, granted);
    },
    [=](withdraw_atom, uint64_t op) {
      self->send(ch, withdraw_atom::value, op);
    },
    [=](offer_state_atom, uint64_t op, uint8_t state, caf::error& err) {
      switch (static_cast<offer_state>(state)) {
        case offer_state::parked:
          log->push_back("parked " + std::to_string(op));
          break;
        case offer_state::would_block:
          log->push_back("would_block " + std::to_string(op));
          break;
        case offer_state::failed:
          log->push_back("failed " + std::to_string(op) + " "
                         + errc_name(err));
          break;
      }
    },
    [=](claim_atom, uint64_t op, uint64_t id) {
      log->push_back("claim " + std::to_string(op) + " #"
                     + std::to_string(id));
    },
    [=](claim_end_atom, uint64_t id, bool confirmed) {
      log->push_back("end #" + std::to_string(id)
                     + (confirmed ? " confirmed" : " released"));
    },
    [=](offer_value_atom, uint64_t op, envelope& value) {
      log->push_back("value " + std::to_string(op) + " "
                     + std::string(value.bytes.begin(),
                                   value.bytes.end()));
      self->send(ch, ack_atom::value, value.lease);
    },
    [=](offer_done_atom, uint64_t op, caf::error& err) {
      log->push_back("done " + std::to_string(op) + " " + errc_name(err));
    },
  };
}

caf::actor_system_config& testing_config(caf::actor_system_config& cfg) {
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.inline-output", true);
  add_netchan_types(cfg);
  return cfg;
}

/// One channel of the given capacity and any number of clients, all driven
/// step by step. Every step checks len <= cap (and, for capacity >= 1, that
/// buffered + reserved + leased <= cap).
struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  size_t capacity;
  caf::actor ch;
  std::vector<caf::actor> clients;
  uint64_t next_op = 1;

  explicit fixture(size_t cap, size_t max_size = 1024)
    : sys(testing_config(cfg)),
      sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())),
      capacity(cap) {
    channel_spec spec;
    spec.name = "test-chan";
    spec.type_name = "item";
    spec.capacity = cap;
    spec.max_message_size = max_size;
    ch = spawn_channel(sys, spec);
    run();
  }

  ~fixture() {
    for (auto& c : clients)
      caf::anon_send_exit(c, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(ch, caf::exit_reason::user_shutdown);
    sched.run();
  }

  struct client {
    fixture* fix;
    caf::actor self;
    std::shared_ptr<verdicts> log;
    uint64_t sender_id;
    uint64_t next_seq = 1;

    /// Sends a value; returns the operation id.
    uint64_t put(const std::string& payload,
                 put_mode mode = put_mode::park) {
      auto op = fix->next_op++;
      envelope e{sender_id, next_seq++, false, 0, to_payload(payload)};
      caf::anon_send(self, put_atom::value, op, std::move(e),
                     static_cast<uint8_t>(mode));
      fix->run();
      return op;
    }

    uint64_t get(bool may_park = true) {
      auto op = fix->next_op++;
      caf::anon_send(self, get_atom::value, op, may_park);
      fix->run();
      return op;
    }

    template <class Atom>
    uint64_t request_lease_op(Atom atom, uint64_t lease) {
      auto op = fix->next_op++;
      caf::anon_send(self, atom, op, lease);
      fix->run();
      return op;
    }

    uint64_t commit(uint64_t lease) {
      return request_lease_op(commit_atom::value, lease);
    }

    uint64_t release(uint64_t lease) {
      return request_lease_op(release_atom::value, lease);
    }

    uint64_t close() {
      auto op = fix->next_op++;
      caf::anon_send(self, close_atom::value, op);
      fix->run();
      return op;
    }

    /// Credit the owner granted unasked so far (grant_atom).
    uint64_t topped_up() const {
      auto i = log->find(0);
      return i != log->end() ? i->second.count : 0;
    }

    /// Sends values "1".."n" (sequence numbers 1..n) on credit, in one batch.
    void send_batch(uint64_t n) {
      batch batch;
      for (uint64_t i = 1; i <= n; ++i)
        batch.values.push_back(envelope{sender_id, i, false, 0,
                                        to_payload(std::string(1, '0' + i))});
      caf::anon_send(self, put_batch_atom::value, std::move(batch));
      fix->run();
    }

    uint64_t reserve(uint64_t want) {
      auto op = fix->next_op++;
      caf::anon_send(self, reserve_atom::value, op, want);
      fix->run();
      return op;
    }

    template <class Atom>
    void tell(Atom atom, uint64_t x) {
      caf::anon_send(self, atom, x);
      fix->run();
    }

    void take(uint64_t lease) {
      tell(take_atom::value, lease);
    }
    void ack(uint64_t lease) {
      tell(ack_atom::value, lease);
    }
    void withdraw(uint64_t op) {
      tell(withdraw_atom::value, op);
    }

    /// The verdict of `op`, if one arrived.
    std::optional<verdict> verdict_of(uint64_t op) const {
      auto i = log->find(op);
      if (i == log->end())
        return std::nullopt;
      return i->second;
    }

    bool pending(uint64_t op) const {
      return log->count(op) == 0;
    }

    std::string what(uint64_t op) const {
      auto v = verdict_of(op);
      return v ? v->what : "pending";
    }

    std::string payload_of(uint64_t op) const {
      auto v = verdict_of(op);
      BOOST_REQUIRE(v && v->what == "value");
      return std::string(v->value.bytes.begin(), v->value.bytes.end());
    }

    uint64_t lease_of(uint64_t op) const {
      auto v = verdict_of(op);
      BOOST_REQUIRE(v && v->what == "value");
      return v->lease;
    }

    /// Receives and acknowledges at once (a plain receive); returns payload.
    std::string receive() {
      auto op = get(false);
      auto payload = payload_of(op);
      ack(lease_of(op));
      return payload;
    }

    void kill() {
      caf::anon_send_exit(self, caf::exit_reason::kill);
      fix->run();
    }
  };

  struct selector {
    fixture* fix;
    caf::actor self;
    std::shared_ptr<hearing> log;

    void offer_put(uint64_t op, const std::string& payload) {
      envelope e{0, 0, false, 0, to_payload(payload)};
      caf::anon_send(self, offer_put_atom::value, op, std::move(e));
      fix->run();
    }

    void offer_get(uint64_t op) {
      caf::anon_send(self, offer_get_atom::value, op);
      fix->run();
    }

    void reply(uint64_t claim_id, bool granted) {
      caf::anon_send(self, claim_reply_atom::value, claim_id, granted);
      fix->run();
    }

    /// The id of the last claim this selector heard, or 0.
    uint64_t last_claim() const {
      for (auto i = log->rbegin(); i != log->rend(); ++i)
        if (i->rfind("claim ", 0) == 0)
          return std::stoull(i->substr(i->find('#') + 1));
      return 0;
    }

    bool heard(const std::string& line) const {
      return std::find(log->begin(), log->end(), line) != log->end();
    }

    void kill() {
      caf::anon_send_exit(self, caf::exit_reason::kill);
      fix->run();
    }
  };

  selector make_selector() {
    auto log = std::make_shared<hearing>();
    auto self = sys.spawn(scripted_selector, ch, log);
    clients.push_back(self);
    run();
    return selector{this, self, log};
  }

  client make_client() {
    auto log = std::make_shared<verdicts>();
    auto self = sys.spawn(client_actor, ch, log);
    clients.push_back(self);
    run();
    return client{this, self, log, clients.size() * 1000};
  }

  void run() {
    sched.run();
    check_invariant();
  }

  channel_stats stats() {
    channel_stats result;
    bool done = false;
    auto asker = sys.spawn([&](caf::event_based_actor* self) {
      self->request(ch, caf::infinite, stats_atom::value)
        .then([&](channel_stats& st) {
          result = st;
          done = true;
        });
    });
    sched.run();
    BOOST_REQUIRE(done);
    return result;
  }

  /// What the owner finds off in its own counters (empty if nothing).
  std::string violation() {
    std::string result;
    bool done = false;
    auto asker = sys.spawn([&](caf::event_based_actor* self) {
      self->request(ch, caf::infinite, check_atom::value)
        .then([&](std::string& off) {
          result = std::move(off);
          done = true;
        });
    });
    sched.run();
    BOOST_REQUIRE(done);
    return result;
  }

  void check_invariant() {
    auto off = violation();
    BOOST_CHECK_MESSAGE(off.empty(), off);
    auto st = stats();
    BOOST_CHECK_LE(st.buffered, capacity == 0 ? st.requeued : capacity);
    if (capacity > 0)
      BOOST_CHECK_LE(st.buffered + st.reserved + st.leased, capacity);
  }
};

const std::vector<size_t> capacities{0, 1, 16};

} // namespace

// -- the semantics table, row by row ------------------------------------------

BOOST_DATA_TEST_CASE(a_value_sent_is_received_exactly_once,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto put = tx.put("v1");
  auto get = rx.get();
  BOOST_CHECK_EQUAL(rx.payload_of(get), "v1");
  rx.ack(rx.lease_of(get));
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
  auto again = rx.get(false);
  BOOST_CHECK_EQUAL(rx.what(again), "would_block");
  auto st = f.stats();
  BOOST_CHECK_EQUAL(st.sent, 1u);
  BOOST_CHECK_EQUAL(st.received, 1u);
}

BOOST_AUTO_TEST_CASE(unbuffered_send_completes_only_when_a_receiver_takes_it) {
  fixture f{0};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto put = tx.put("v");
  BOOST_CHECK(tx.pending(put)); // nobody receives: the sender waits
  BOOST_CHECK_EQUAL(f.stats().buffered, 0u);
  auto get = rx.get();
  BOOST_CHECK_EQUAL(rx.payload_of(get), "v");
  BOOST_CHECK(tx.pending(put)); // handed out, not yet taken
  rx.take(rx.lease_of(get));
  BOOST_CHECK_EQUAL(tx.what(put), "ok"); // released in the taking step
}

BOOST_AUTO_TEST_CASE(a_receiver_waiting_first_meets_an_unbuffered_sender) {
  fixture f{0};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto get = rx.get();
  BOOST_CHECK(rx.pending(get));
  auto put = tx.put("v");
  BOOST_CHECK_EQUAL(rx.payload_of(get), "v");
  BOOST_CHECK(tx.pending(put));
  rx.ack(rx.lease_of(get));
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
}

BOOST_DATA_TEST_CASE(buffered_sends_complete_while_slots_are_free,
                     bdata::make(std::vector<size_t>{1, 16}), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  std::vector<uint64_t> puts;
  for (size_t i = 0; i < cap; ++i)
    puts.push_back(tx.put("v" + std::to_string(i)));
  for (auto op : puts)
    BOOST_CHECK_EQUAL(tx.what(op), "ok");
  BOOST_CHECK_EQUAL(f.stats().buffered, cap);
  auto blocked = tx.put("over");
  BOOST_CHECK(tx.pending(blocked)); // full: the sender parks
  // A value handed out still holds its slot until acknowledged.
  auto get = rx.get();
  BOOST_CHECK(tx.pending(blocked));
  rx.ack(rx.lease_of(get));
  BOOST_CHECK_EQUAL(tx.what(blocked), "ok");
  BOOST_CHECK_EQUAL(f.stats().buffered, cap);
}

BOOST_DATA_TEST_CASE(a_receive_waits_until_a_value_arrives,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto get = rx.get();
  BOOST_CHECK(rx.pending(get));
  tx.put("late");
  BOOST_CHECK_EQUAL(rx.payload_of(get), "late");
}

BOOST_DATA_TEST_CASE(each_value_goes_to_one_receiver_in_the_senders_order,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx1 = f.make_client();
  auto rx2 = f.make_client();
  std::vector<std::string> got;
  // Receivers wait first, so that every capacity can make progress.
  for (int i = 0; i < 20; ++i) {
    auto& rx = i % 2 == 0 ? rx1 : rx2;
    auto get = rx.get();
    tx.put("v" + std::to_string(i));
    got.push_back(rx.payload_of(get));
    rx.ack(rx.lease_of(get));
  }
  for (int i = 0; i < 20; ++i)
    BOOST_CHECK_EQUAL(got[i], "v" + std::to_string(i));
}

BOOST_DATA_TEST_CASE(try_operations_never_park, bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  BOOST_CHECK_EQUAL(rx.what(rx.get(false)), "would_block");
  for (size_t i = 0; i < cap; ++i)
    BOOST_CHECK_EQUAL(tx.what(tx.put("fill", put_mode::try_once)), "ok");
  BOOST_CHECK_EQUAL(tx.what(tx.put("more", put_mode::try_once)),
                    "would_block");
  auto st = f.stats();
  BOOST_CHECK_EQUAL(st.buffered, cap);
  BOOST_CHECK_EQUAL(st.parked_senders, 0u);
  BOOST_CHECK_EQUAL(st.sent, cap);
}

BOOST_AUTO_TEST_CASE(an_unbuffered_try_send_meets_a_waiting_receiver) {
  fixture f{0};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto get = rx.get();
  auto put = tx.put("v", put_mode::try_once);
  BOOST_CHECK(tx.pending(put));
  rx.take(rx.lease_of(get));
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
}

// -- withdrawal: the owner's verdict settles every race ---------------------

BOOST_DATA_TEST_CASE(a_withdrawn_receive_never_swallows_a_value,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto get = rx.get();
  rx.withdraw(get);
  BOOST_CHECK_EQUAL(rx.what(get), "timeout");
  auto put = tx.put("v");
  auto get2 = rx.get();
  BOOST_CHECK_EQUAL(rx.payload_of(get2), "v"); // not lost to the first get
  rx.ack(rx.lease_of(get2));
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
}

BOOST_DATA_TEST_CASE(a_withdrawal_after_the_hand_off_leaves_the_value_delivered,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto get = rx.get();
  tx.put("v");
  rx.withdraw(get); // too late: the value is already on its way
  BOOST_CHECK_EQUAL(rx.payload_of(get), "v");
  BOOST_CHECK_EQUAL(f.stats().leased, 1u);
}

BOOST_DATA_TEST_CASE(a_withdrawn_send_is_returned_and_never_delivered,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  for (size_t i = 0; i < cap; ++i)
    tx.put("fill");
  auto put = tx.put("late");
  BOOST_CHECK(tx.pending(put));
  tx.withdraw(put);
  BOOST_CHECK_EQUAL(tx.what(put), "timeout");
  for (size_t i = 0; i < cap; ++i)
    BOOST_CHECK_EQUAL(rx.receive(), "fill");
  BOOST_CHECK_EQUAL(rx.what(rx.get(false)), "would_block");
  BOOST_CHECK_EQUAL(f.stats().returned, 1u);
}

BOOST_DATA_TEST_CASE(a_withdrawal_after_a_buffered_send_completed_changes_nothing,
                     bdata::make(std::vector<size_t>{1, 16}), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto put = tx.put("v");
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
  tx.withdraw(put);
  BOOST_CHECK_EQUAL(rx.receive(), "v");
}

BOOST_AUTO_TEST_CASE(an_unbuffered_send_withdrawn_in_flight_is_delivered_if_taken) {
  fixture f{0};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto put = tx.put("v");
  auto get = rx.get();
  tx.withdraw(put); // the value is in flight: the take decides
  BOOST_CHECK(tx.pending(put));
  rx.ack(rx.lease_of(get));
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
}

BOOST_AUTO_TEST_CASE(an_unbuffered_send_withdrawn_in_flight_comes_back_if_not_taken) {
  fixture f{0};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto put = tx.put("v");
  auto get = rx.get();
  BOOST_CHECK_EQUAL(rx.payload_of(get), "v");
  tx.withdraw(put);
  rx.kill(); // dies before taking it
  BOOST_CHECK_EQUAL(tx.what(put), "timeout");
  auto rx2 = f.make_client();
  BOOST_CHECK_EQUAL(rx2.what(rx2.get(false)), "would_block");
  auto st = f.stats();
  BOOST_CHECK_EQUAL(st.sent, 0u);
  BOOST_CHECK_EQUAL(st.returned, 1u);
}

BOOST_AUTO_TEST_CASE(withdrawing_an_unknown_operation_is_harmless) {
  fixture f{1};
  auto tx = f.make_client();
  tx.withdraw(4711);
  auto put = tx.put("v");
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
}

// -- leases -------------------------------------------------------------------

BOOST_DATA_TEST_CASE(a_released_lease_is_requeued_at_the_head_and_flagged,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto get = rx.get();
  tx.put("first");
  auto lease = rx.lease_of(get);
  rx.take(lease);
  BOOST_CHECK(!rx.verdict_of(get)->value.redelivered);
  BOOST_CHECK_EQUAL(rx.what(rx.release(lease)), "ok");
  if (cap > 0)
    tx.put("second");
  auto again = rx.get();
  BOOST_CHECK_EQUAL(rx.payload_of(again), "first");
  BOOST_CHECK(rx.verdict_of(again)->value.redelivered);
  BOOST_CHECK_EQUAL(rx.what(rx.commit(rx.lease_of(again))), "ok");
  BOOST_CHECK_EQUAL(rx.what(rx.commit(rx.lease_of(again))), "lease_settled");
  auto st = f.stats();
  BOOST_CHECK_EQUAL(st.requeued, 1u);
  BOOST_CHECK_EQUAL(st.received, 1u);
}

BOOST_DATA_TEST_CASE(a_lease_is_requeued_when_its_holder_exits,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto holder = f.make_client();
  auto get = holder.get();
  auto put = tx.put("job");
  holder.take(holder.lease_of(get));
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
  holder.kill();
  auto rx = f.make_client();
  auto again = rx.get(false);
  BOOST_CHECK_EQUAL(rx.payload_of(again), "job");
  BOOST_CHECK(rx.verdict_of(again)->value.redelivered);
  BOOST_CHECK_EQUAL(f.stats().requeued, 1u);
}

BOOST_AUTO_TEST_CASE(an_unbuffered_value_not_yet_taken_returns_to_its_sender_queue) {
  fixture f{0};
  auto tx = f.make_client();
  auto holder = f.make_client();
  auto get = holder.get();
  auto put = tx.put("v");
  BOOST_CHECK_EQUAL(holder.payload_of(get), "v");
  holder.kill(); // before taking: the sender is still waiting
  BOOST_CHECK(tx.pending(put));
  auto rx = f.make_client();
  auto again = rx.get();
  BOOST_CHECK_EQUAL(rx.payload_of(again), "v");
  BOOST_CHECK(rx.verdict_of(again)->value.redelivered);
  rx.ack(rx.lease_of(again));
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
}

BOOST_AUTO_TEST_CASE(a_leased_value_holds_its_slot_until_committed) {
  fixture f{1};
  auto tx = f.make_client();
  auto rx = f.make_client();
  tx.put("a");
  auto get = rx.get();
  rx.take(rx.lease_of(get));
  auto put = tx.put("b");
  BOOST_CHECK(tx.pending(put)); // len 0, but the lease counts against cap
  BOOST_CHECK_EQUAL(f.stats().buffered, 0u);
  rx.commit(rx.lease_of(get));
  BOOST_CHECK_EQUAL(tx.what(put), "ok");
}

// -- close ----------------------------------------------------------------------

BOOST_DATA_TEST_CASE(close_drains_the_buffer_then_reports_closed,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto rx = f.make_client();
  for (size_t i = 0; i < cap; ++i)
    tx.put("v" + std::to_string(i));
  auto parked = tx.put("parked");
  BOOST_CHECK(tx.pending(parked));
  BOOST_CHECK_EQUAL(tx.what(tx.close()), "ok");
  BOOST_CHECK_EQUAL(tx.what(parked), "closed"); // handed back
  BOOST_CHECK_EQUAL(tx.what(tx.put("after")), "closed");
  for (size_t i = 0; i < cap; ++i)
    BOOST_CHECK_EQUAL(rx.receive(), "v" + std::to_string(i));
  BOOST_CHECK_EQUAL(rx.what(rx.get()), "closed");
  BOOST_CHECK_EQUAL(rx.what(rx.get(false)), "closed");
  BOOST_CHECK_EQUAL(tx.what(tx.close()), "closed"); // a second close
  BOOST_CHECK_EQUAL(f.stats().returned, 2u);
}

BOOST_DATA_TEST_CASE(close_wakes_parked_receivers, bdata::make(capacities),
                     cap) {
  fixture f{cap};
  auto rx1 = f.make_client();
  auto rx2 = f.make_client();
  auto g1 = rx1.get();
  auto g2 = rx2.get();
  rx1.close();
  BOOST_CHECK_EQUAL(rx1.what(g1), "closed");
  BOOST_CHECK_EQUAL(rx2.what(g2), "closed");
}

BOOST_DATA_TEST_CASE(closed_is_reported_only_once_every_lease_is_settled,
                     bdata::make(capacities), cap) {
  fixture f{cap};
  auto tx = f.make_client();
  auto holder = f.make_client();
  auto rx = f.make_client();
  auto get = holder.get();
  tx.put("job");
  holder.take(holder.lease_of(get));
  tx.close();
  auto waiting = rx.get();
  BOOST_CHECK(rx.pending(waiting)); // the lease may still come back
  holder.kill();
  BOOST_CHECK_EQUAL(rx.payload_of(waiting), "job");
  rx.ack(rx.lease_of(waiting));
  BOOST_CHECK_EQUAL(rx.what(rx.get()), "closed");
}

// -- bad input ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(an_oversized_value_is_refused) {
  fixture f{1, 8};
  auto tx = f.make_client();
  BOOST_CHECK_EQUAL(tx.what(tx.put("123456789")), "message_too_large");
  BOOST_CHECK_EQUAL(tx.what(tx.put("12345678")), "ok");
}

BOOST_AUTO_TEST_CASE(a_resent_value_is_recognised_and_dropped) {
  fixture f{4};
  auto tx = f.make_client();
  tx.put("once");
  tx.next_seq -= 1; // the same sender and sequence number again
  BOOST_CHECK_EQUAL(tx.what(tx.put("once")), "ok");
  auto st = f.stats();
  BOOST_CHECK_EQUAL(st.buffered, 1u);
  BOOST_CHECK_EQUAL(st.duplicates, 1u);
}

// -- credit ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(credit_is_granted_only_for_free_slots_and_returns) {
  fixture f{4};
  auto tx = f.make_client();
  auto other = f.make_client();
  auto r = tx.reserve(3);
  BOOST_CHECK_EQUAL(tx.verdict_of(r)->count, 3u);
  BOOST_CHECK_EQUAL(other.what(other.put("x")), "ok"); // the 4th slot
  auto parked = other.put("y");
  BOOST_CHECK(other.pending(parked)); // reserved slots are not free
  auto more = tx.reserve(5);
  BOOST_CHECK(tx.pending(more)); // credit waits for a free slot
  for (int i = 0; i < 3; ++i)
    BOOST_CHECK_EQUAL(tx.what(tx.put("r", put_mode::reserved)), "ok");
  BOOST_CHECK_EQUAL(tx.what(tx.put("r", put_mode::reserved)),
                    "invalid_argument"); // no credit left
  auto rx = f.make_client();
  rx.receive();
  BOOST_CHECK_EQUAL(other.what(parked), "ok"); // first come, first served
  BOOST_CHECK(tx.pending(more));
  rx.receive();
  BOOST_CHECK_EQUAL(tx.verdict_of(more)->count, 1u);
  // Unused credit flows back.
  tx.tell(unreserve_atom::value, 1);
  BOOST_CHECK_EQUAL(f.stats().reserved, 0u);
}

BOOST_AUTO_TEST_CASE(a_batch_on_credit_is_received_in_batches_and_acked_at_once) {
  fixture f{8};
  auto tx = f.make_client();
  auto rx = f.make_client();
  BOOST_CHECK_EQUAL(tx.verdict_of(tx.reserve(8))->count, 8u);
  tx.send_batch(5);
  auto st = f.stats();
  BOOST_CHECK_EQUAL(st.buffered, 5u);
  BOOST_CHECK_EQUAL(st.reserved, 3u);
  std::vector<envelope> got;
  // The lease holder must stay alive: its exit would re-queue the leases.
  auto holder = f.sys.spawn([&](caf::event_based_actor* self) -> caf::behavior {
    self->request(f.ch, caf::infinite, get_many_atom::value, uint64_t{1},
                  uint64_t{3}, true)
      .then([&](batch& xs) { got = std::move(xs.values); });
    return {[](int) {}};
  });
  f.clients.push_back(holder);
  f.run();
  BOOST_REQUIRE_EQUAL(got.size(), 3u);
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < got.size(); ++i) {
    BOOST_CHECK_EQUAL(got[i].bytes.data()[0], char('1' + i)); // in order
    ids.push_back(got[i].lease);
  }
  BOOST_CHECK_EQUAL(f.stats().leased, 3u);
  caf::anon_send(f.ch, ack_many_atom::value, ids);
  f.run();
  st = f.stats();
  BOOST_CHECK_EQUAL(st.leased, 0u);
  BOOST_CHECK_EQUAL(st.received, 3u);
  BOOST_CHECK_EQUAL(st.buffered, 2u);
}

BOOST_AUTO_TEST_CASE(a_streaming_sender_is_topped_up_until_it_unreserves) {
  fixture f{8};
  auto tx = f.make_client();
  auto rx = f.make_client();
  BOOST_CHECK_EQUAL(tx.verdict_of(tx.reserve(8))->count, 8u);
  tx.send_batch(8);
  BOOST_CHECK_EQUAL(f.stats().buffered, 8u);
  // One slot frees: less than a chunk (a quarter of the capacity), no grant.
  BOOST_CHECK_EQUAL(rx.receive(), "1");
  BOOST_CHECK_EQUAL(tx.topped_up(), 0u);
  // The second makes a chunk: both slots go to the sender, unasked, and the
  // owner says which of its values it has.
  BOOST_CHECK_EQUAL(rx.receive(), "2");
  BOOST_CHECK_EQUAL(tx.topped_up(), 2u);
  BOOST_CHECK_EQUAL(f.stats().reserved, 2u);
  // Given back: no more top-ups; freed slots stay free for anyone.
  tx.tell(unreserve_atom::value, 2);
  for (char c = '3'; c <= '8'; ++c)
    BOOST_CHECK_EQUAL(rx.receive(), std::string(1, c));
  BOOST_CHECK_EQUAL(tx.topped_up(), 2u);
  auto st = f.stats();
  BOOST_CHECK_EQUAL(st.reserved, 0u);
  BOOST_CHECK_EQUAL(st.buffered, 0u);
}

BOOST_AUTO_TEST_CASE(credit_granted_before_close_still_delivers) {
  fixture f{4};
  auto tx = f.make_client();
  auto rx = f.make_client();
  BOOST_CHECK_EQUAL(tx.verdict_of(tx.reserve(2))->count, 2u);
  auto waiting = rx.get();
  rx.close();
  BOOST_CHECK(rx.pending(waiting)); // credit is out: values may still come
  BOOST_CHECK_EQUAL(tx.what(tx.put("late", put_mode::reserved)), "ok");
  BOOST_CHECK_EQUAL(rx.payload_of(waiting), "late");
  rx.ack(rx.lease_of(waiting));
  auto more = rx.get();
  BOOST_CHECK(rx.pending(more));
  tx.tell(unreserve_atom::value, 1); // the rest of the credit comes back
  BOOST_CHECK_EQUAL(rx.what(more), "closed");
  BOOST_CHECK_EQUAL(tx.what(tx.reserve(1)), "closed");
}

BOOST_AUTO_TEST_CASE(close_ends_a_wait_for_credit) {
  fixture f{1};
  auto tx = f.make_client();
  tx.put("fill");
  auto r = tx.reserve(1);
  BOOST_CHECK(tx.pending(r));
  tx.close();
  BOOST_CHECK_EQUAL(tx.what(r), "closed");
}

BOOST_AUTO_TEST_CASE(a_capacity_0_channel_grants_no_credit) {
  fixture f{0};
  auto tx = f.make_client();
  BOOST_CHECK_EQUAL(tx.what(tx.reserve(1)), "invalid_argument");
}

BOOST_AUTO_TEST_CASE(credit_of_an_exited_sender_returns) {
  fixture f{2};
  auto tx = f.make_client();
  BOOST_CHECK_EQUAL(tx.verdict_of(tx.reserve(2))->count, 2u);
  tx.kill();
  BOOST_CHECK_EQUAL(f.stats().reserved, 0u);
}

// -- the owner's exit -------------------------------------------------------------

BOOST_AUTO_TEST_CASE(when_the_channel_exits_every_waiting_party_gets_an_error) {
  fixture f{0};
  auto tx = f.make_client();
  auto rx = f.make_client();
  auto other_tx = f.make_client();
  auto get = rx.get();
  auto matched = tx.put("in flight");
  auto parked = other_tx.put("parked");
  auto waiting_rx = f.make_client();
  BOOST_CHECK_EQUAL(rx.payload_of(get), "in flight");
  caf::anon_send_exit(f.ch, caf::exit_reason::user_shutdown);
  f.sched.run();
  BOOST_CHECK_EQUAL(tx.what(matched), "outcome_unknown");
  BOOST_CHECK_EQUAL(other_tx.what(parked), "peer_down");
}

BOOST_AUTO_TEST_CASE(a_parked_receive_gets_peer_down_when_the_channel_exits) {
  fixture f{4};
  auto rx = f.make_client();
  auto get = rx.get();
  caf::anon_send_exit(f.ch, caf::exit_reason::user_shutdown);
  f.sched.run();
  BOOST_CHECK_EQUAL(rx.what(get), "peer_down");
}

// -- select: claims that do not complete ------------------------------------------

namespace {

size_t times_heard(const fixture::selector& s, const std::string& line) {
  return static_cast<size_t>(std::count(s.log->begin(), s.log->end(), line));
}

} // namespace

// At capacity 0 a send offer meets a receive offer of another selector: the
// owner asks one, then the other. If the second vanishes while the first
// has not answered yet, the first must hear that the claim is void: a
// selector that grants a claim the owner dropped would wait for its end
// forever, refusing nothing, and every claim of every other channel on it
// would hold its slot meanwhile (issue 15: a capacity-1 channel wedged with
// a free slot, parked receivers and a parked credit request).
BOOST_AUTO_TEST_CASE(a_claim_whose_other_selector_vanishes_releases_the_one_it_asked) {
  fixture f{0};
  auto s1 = f.make_selector();
  auto s2 = f.make_selector();
  s1.offer_put(1, "x");
  s2.offer_get(1);
  // The owner asks one selector first, in its global order.
  auto& asked = s1.last_claim() != 0 ? s1 : s2;
  auto& other = &asked == &s1 ? s2 : s1;
  auto first = asked.last_claim();
  BOOST_REQUIRE(first != 0);
  BOOST_CHECK_EQUAL(other.last_claim(), 0u);
  BOOST_CHECK(other.heard("parked 1"));
  auto released = "end #" + std::to_string(first) + " released";
  other.kill();
  BOOST_CHECK_EQUAL(times_heard(asked, released), 1u);
  // A grant that crossed the release is answered with the release again:
  // whatever the order, the selector is not left holding.
  asked.reply(first, true);
  BOOST_CHECK_EQUAL(times_heard(asked, released), 2u);
  // Its offer waits again: the next counterpart makes a new claim, which
  // completes.
  auto c = f.make_client();
  auto op = &asked == &s1 ? c.get() : c.put("y");
  auto second = asked.last_claim();
  BOOST_REQUIRE(second > first);
  BOOST_CHECK(c.pending(op));
  asked.reply(second, true);
  BOOST_CHECK(asked.heard("end #" + std::to_string(second) + " confirmed"));
  if (&asked == &s1) {
    BOOST_CHECK_EQUAL(c.payload_of(op), "x");
    c.take(c.lease_of(op));
    BOOST_CHECK(asked.heard("done 1 ok"));
  } else {
    BOOST_CHECK(asked.heard("value 1 y"));
    BOOST_CHECK_EQUAL(c.what(op), "ok");
  }
  auto st = f.stats();
  BOOST_CHECK_EQUAL(st.sent, 1u);
  BOOST_CHECK_EQUAL(st.parked_senders + st.parked_receivers, 0u);
}

BOOST_AUTO_TEST_CASE(a_refused_claim_gives_its_slot_to_a_waiting_credit_request) {
  fixture f{1};
  auto sel = f.make_selector();
  auto tx = f.make_client();
  sel.offer_put(1, "x");
  auto id = sel.last_claim();
  BOOST_REQUIRE(id != 0);
  auto r = tx.reserve(1);
  BOOST_CHECK(tx.pending(r)); // the claim holds the only slot
  sel.reply(id, false);       // the select chose another case
  BOOST_CHECK_EQUAL(tx.verdict_of(r)->count, 1u);
  BOOST_CHECK_EQUAL(f.stats().reserved, 1u);
}

// close() fails every send that has not happened yet, a select's send case
// inside an unfinished claim included: its selector is released and told
// `closed`, and the slot the claim held goes with it.
BOOST_DATA_TEST_CASE(close_fails_a_send_case_whose_claim_is_unanswered,
                     bdata::make(std::vector<size_t>{0, 1}), cap) {
  fixture f{cap};
  auto sel = f.make_selector();
  auto c = f.make_client();
  std::optional<uint64_t> get;
  if (cap == 0)
    get = c.get(); // the counterpart of the claim
  sel.offer_put(1, "x");
  auto id = sel.last_claim();
  BOOST_REQUIRE(id != 0);
  std::optional<uint64_t> reserve;
  if (cap == 1) {
    reserve = c.reserve(1);
    BOOST_CHECK(c.pending(*reserve));
  }
  c.close();
  BOOST_CHECK(sel.heard("end #" + std::to_string(id) + " released"));
  BOOST_CHECK(sel.heard("failed 1 closed"));
  if (reserve)
    BOOST_CHECK_EQUAL(c.what(*reserve), "closed");
  sel.reply(id, true); // too late: the claim is gone
  BOOST_CHECK(!sel.heard("done 1 ok"));
  if (get)
    BOOST_CHECK_EQUAL(c.what(*get), "closed");
  BOOST_CHECK_EQUAL(c.what(c.get(false)), "closed");
  BOOST_CHECK_EQUAL(f.stats().sent, 0u);
}
