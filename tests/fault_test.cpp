// Failure semantics between processes: receivers, senders and owners die at
// exact protocol points (NETCHAN_TEST_DIE_AT in a netchan-test-peer's
// environment, tests/die_at.hpp; libnetchan/src/hook/test_hook.hpp names them)
// or at a random moment, a receiver freezes, a channel closes under remote
// users; and every value is accounted for (DESIGN.md, "Failure contract"):
// received, returned with an error, lost with its owner's buffer (capacity
// N >= 1 only, at most N), or in doubt and flagged.
#define BOOST_TEST_MODULE fault
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <condition_variable>
#include <csignal>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "books.hpp"
#include "nodes.hpp"

using namespace std::chrono_literals;
namespace bdata = boost::unit_test::data;

using test::books;
using test::check_every_value_once_or_flagged;
using test::check_owner_settled;
using test::clock_type;
using test::drainer;

namespace {

/// A killed process looks like a broken link until the resume window
/// passes: this suite keeps the window short, on every node.
struct fixture : test::cluster {
  fixture() {
    extra = {"--netchan.resume-timeout=1s"};
  }
};

/// How a receiver dies: where (hook point, or "random": the test kills it
/// after a random number of values) and whether it takes leases.
struct receiver_death {
  size_t capacity;
  std::string point;
  bool leases;
};

std::ostream& operator<<(std::ostream& out, const receiver_death& d) {
  return out << "cap " << d.capacity << ", dies at " << d.point
             << (d.leases ? ", leases" : ", plain receive");
}

} // namespace

BOOST_TEST_DONT_PRINT_LOG_VALUE(receiver_death)

BOOST_FIXTURE_TEST_SUITE(fault, fixture)

// -- a receiver dies -------------------------------------------------------------

BOOST_DATA_TEST_CASE_F(
  fixture, a_receiver_dying_mid_stream_loses_nothing,
  bdata::make(std::vector<receiver_death>{
    {0, "holding-lease:300", true},
    {16, "holding-lease:300", true},
    {0, "receive:300", false},
    {16, "receive:300", false},
    {16, "random", true},
  }),
  death) {
  BOOST_TEST_MESSAGE(death);
  const uint64_t produced = 5000;
  test::local_node owner{listen_args()};
  auto ch = owner.get().create<uint64_t>("stream", death.capacity);
  BOOST_REQUIRE(ch);
  auto [tx, rx] = *ch;
  books b;
  std::vector<std::string> env;
  size_t kill_after = 0;
  if (death.point == "random") {
    std::random_device rd;
    kill_after = std::uniform_int_distribution<size_t>{100, 2000}(rd);
    BOOST_TEST_MESSAGE("killed after " << kill_after << " values");
  } else {
    env.push_back("NETCHAN_TEST_DIE_AT=" + death.point);
  }
  drainer dying{owner.where("stream"), death.leases, client_args(), b, env,
                kill_after};
  drainer surviving{owner.where("stream"), death.leases, client_args(), b};
  auto sending = std::async(std::launch::async, [tx = tx, produced] {
    for (uint64_t v = 1; v <= produced; ++v)
      if (auto err = tx.send(v))
        return "at " + std::to_string(v) + ": " + netchan::to_string(err);
    return std::string{};
  });
  BOOST_REQUIRE(sending.wait_for(120s) == std::future_status::ready);
  auto send_error = sending.get();
  BOOST_REQUIRE_MESSAGE(send_error.empty(), send_error);
  BOOST_REQUIRE(b.wait_distinct(produced, 60s));
  BOOST_CHECK_EQUAL(dying.proc().wait(30s), 128 + SIGKILL);
  BOOST_REQUIRE(!tx.close());
  BOOST_CHECK_EQUAL(surviving.end(30s), "ok");
  check_every_value_once_or_flagged(b, produced);
  check_owner_settled(rx);
}

// -- a sender dies ---------------------------------------------------------------

BOOST_DATA_TEST_CASE_F(fixture,
                       a_dead_senders_values_arrive_in_order_without_gaps,
                       bdata::make(std::vector<size_t>{0, 16}), capacity) {
  const uint64_t dies_after = 700;
  test::local_node owner{listen_args()};
  auto ch = owner.get().create<uint64_t>("stream", capacity);
  BOOST_REQUIRE(ch);
  auto [tx, rx] = *ch;
  auto sender = test::start_peer(
    "stream", {"--to", owner.where("stream"), "--count", "0"}, client_args(),
    {"NETCHAN_TEST_DIE_AT=sent:" + std::to_string(dies_after)});
  // Receive until the sender is dead...
  std::vector<uint64_t> got;
  auto deadline = clock_type::now() + 60s;
  std::optional<int> status;
  while (!status && clock_type::now() < deadline) {
    if (auto v = rx.receive_for(100ms))
      got.push_back(*v);
    else
      BOOST_REQUIRE(netchan::is(v.error(), netchan::errc::timeout));
    status = sender->try_wait();
  }
  BOOST_REQUIRE_MESSAGE(status, "the sender did not die: "
                                  << sender->transcript());
  BOOST_CHECK_EQUAL(*status, 128 + SIGKILL);
  // ... and the owner knows: its credit is back. Whatever it sent before it
  // died arrived before that (one ordered link), so now nothing is on its way.
  auto settled = clock_type::now() + 30s;
  auto st = rx.stats();
  while (st && st->reserved != 0 && clock_type::now() < settled)
    st = rx.stats();
  BOOST_REQUIRE(st);
  BOOST_REQUIRE_EQUAL(st->reserved, 0u);
  for (;;) {
    auto v = rx.try_receive();
    BOOST_REQUIRE(v);
    if (!*v)
      break;
    got.push_back(**v);
  }
  BOOST_TEST_MESSAGE("sender died after " << dies_after << " sends; "
                                          << got.size() << " arrived");
  BOOST_REQUIRE(!got.empty());
  for (size_t i = 0; i < got.size(); ++i)
    BOOST_REQUIRE_EQUAL(got[i], i + 1); // its order, no gap, no duplicate
  if (capacity == 0)
    BOOST_CHECK_EQUAL(got.size(), dies_after); // each send waited for us
  else
    BOOST_CHECK_LE(got.size(), dies_after);
  // Its credit came back: a new sender can use every slot.
  check_owner_settled(rx);
  for (size_t i = 0; i < capacity; ++i) {
    auto sent = tx.try_send(i);
    BOOST_REQUIRE(sent);
    BOOST_CHECK(*sent);
  }
}

// -- the owner dies ---------------------------------------------------------------

/// Capacity, and the point where the owner dies.
const std::vector<std::pair<size_t, std::string>> owner_deaths{
  {0, "owner-accepted:1500"}, // matched, not yet handed to the receiver
  {0, "owner-handed:1500"},   // handed, the receiver not yet confirmed
  {16, "owner-accepted:1500"},
};

BOOST_DATA_TEST_CASE_F(fixture,
                       an_owner_dying_wakes_everyone_and_loses_at_most_its_capacity,
                       bdata::xrange(owner_deaths.size()), which) {
  auto [capacity, point] = owner_deaths[which];
  const size_t senders = 4;
  test::peer p{{"--channel", "q:u64:" + std::to_string(capacity)},
               listen_args(), {"NETCHAN_TEST_DIE_AT=" + point}};
  test::local_node me{client_args()};
  auto [tx, rx] = test::open_or_fail<uint64_t>(me.get(), p.where("q"));
  struct outcome {
    std::vector<uint64_t> completed;
    std::vector<uint64_t> in_doubt;
    std::vector<uint64_t> returned;
    std::string other;
  };
  std::vector<std::future<outcome>> sending;
  for (uint64_t t = 0; t < senders; ++t)
    sending.push_back(std::async(std::launch::async, [tx = tx, t] {
      outcome out;
      for (uint64_t i = 1;; ++i) {
        auto v = (t << 32) | i;
        auto err = tx.send(v);
        if (!err)
          out.completed.push_back(v);
        else if (netchan::is(err, netchan::errc::outcome_unknown))
          out.in_doubt.push_back(v);
        else if (netchan::is(err, netchan::errc::peer_down))
          out.returned.push_back(v);
        else
          out.other = netchan::to_string(err);
        if (err)
          return out;
      }
    }));
  auto receiving = std::async(std::launch::async, [rx = rx] {
    std::vector<uint64_t> got;
    for (;;) {
      auto v = rx.receive();
      if (!v)
        return std::make_pair(got, v.error());
      got.push_back(*v);
    }
  });
  std::set<uint64_t> completed;
  std::set<uint64_t> in_doubt;
  std::set<uint64_t> returned;
  for (auto& f : sending) {
    BOOST_REQUIRE(f.wait_for(60s) == std::future_status::ready);
    auto out = f.get();
    BOOST_CHECK_MESSAGE(out.other.empty(), out.other);
    completed.insert(out.completed.begin(), out.completed.end());
    in_doubt.insert(out.in_doubt.begin(), out.in_doubt.end());
    returned.insert(out.returned.begin(), out.returned.end());
  }
  BOOST_REQUIRE(receiving.wait_for(60s) == std::future_status::ready);
  auto [received, receive_error] = receiving.get();
  BOOST_CHECK_MESSAGE(netchan::is(receive_error, netchan::errc::peer_down),
                      netchan::to_string(receive_error));
  BOOST_CHECK_EQUAL(p.proc->wait(30s), 128 + SIGKILL);
  // Received: each once, in each sender's order, and only values that were
  // sent (completed, or in doubt), never one handed back as not sent.
  std::set<uint64_t> seen;
  std::map<uint64_t, uint64_t> last;
  for (auto v : received) {
    BOOST_CHECK(seen.insert(v).second);
    BOOST_CHECK(completed.count(v) + in_doubt.count(v) == 1);
    BOOST_CHECK_EQUAL(returned.count(v), 0u);
    BOOST_CHECK_LT(last[v >> 32], v);
    last[v >> 32] = v;
  }
  size_t lost = 0;
  for (auto v : completed)
    lost += seen.count(v) == 0 ? 1 : 0;
  BOOST_TEST_MESSAGE("capacity " << capacity << ", " << point
                                 << ": completed="
                                 << completed.size() << " received="
                                 << received.size() << " in doubt="
                                 << in_doubt.size() << " returned="
                                 << returned.size() << " lost with owner="
                                 << lost);
  BOOST_CHECK_EQUAL(in_doubt.size() + returned.size(), senders);
  BOOST_CHECK_LE(lost, capacity);
}

// -- close across nodes -------------------------------------------------------------

BOOST_AUTO_TEST_CASE(close_reaches_remote_receivers_and_senders) {
  test::local_node owner{listen_args()};
  auto idle = owner.get().create<uint64_t>("idle", 16);
  auto stream = owner.get().create<uint64_t>("stream", 16);
  auto full = owner.get().create<uint64_t>("full", 1);
  BOOST_REQUIRE(idle && stream && full);
  books b;
  // A remote receiver parked on an empty channel wakes with closed.
  drainer waiting{owner.where("idle"), false, client_args(), b};
  // A remote sender blocked on a full channel gets closed, value back.
  auto sender = test::start_peer(
    "stream", {"--to", owner.where("full"), "--count", "5"}, client_args());
  BOOST_REQUIRE(sender->wait_for("streaming", 30s));
  auto deadline = clock_type::now() + 30s;
  auto st = full->second.stats();
  while (st && st->parked_reserves + st->parked_senders == 0
         && clock_type::now() < deadline)
    st = full->second.stats(); // until its second send waits at the owner
  BOOST_REQUIRE(st && st->parked_reserves + st->parked_senders == 1);
  BOOST_REQUIRE(!idle->first.close());
  BOOST_REQUIRE(!full->first.close());
  BOOST_CHECK_EQUAL(waiting.end(30s), "ok");
  auto failed = sender->wait_for("error: ", 30s);
  BOOST_REQUIRE_MESSAGE(failed, sender->transcript());
  BOOST_CHECK_MESSAGE(failed->find("at 2: closed") == 0, *failed);
  auto first = full->second.receive_for(30s); // the one sent before close
  BOOST_REQUIRE(first);
  BOOST_CHECK_EQUAL(*first, 1u);
  BOOST_CHECK(netchan::is(full->second.receive().error(),
                          netchan::errc::closed));
  // A remote receiver of a closed channel still drains what it holds.
  for (uint64_t v = 1; v <= 10; ++v)
    BOOST_REQUIRE(!stream->first.send(v));
  BOOST_REQUIRE(!stream->first.close());
  drainer late{owner.where("stream"), false, client_args(), b};
  BOOST_CHECK_EQUAL(late.end(30s), "ok");
  BOOST_CHECK_EQUAL(late.printed(), 10u);
}

// -- a frozen receiver ------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_frozen_receiver_is_dropped_and_wakes_without_duplicates) {
  // This suite alone tightens the heartbeat, on every node. Tight enough to
  // be quick, loose enough that a loaded machine does not drop the healthy
  // receiver's link too.
  const std::vector<std::string> beat{"--middleman.heartbeat-interval=250ms",
                                      "--middleman.connection-timeout=2s"};
  auto with_beat = [&](std::vector<std::string> args) {
    args.insert(args.end(), beat.begin(), beat.end());
    return args;
  };
  const uint64_t produced = 3000;
  test::local_node owner{with_beat(listen_args())};
  auto ch = owner.get().create<uint64_t>("stream", 16);
  BOOST_REQUIRE(ch);
  auto [tx, rx] = *ch;
  books b;
  // It freezes itself (SIGSTOP) while it holds its 200th lease, so the
  // owner certainly has something of its to take back.
  drainer frozen{owner.where("stream"), true, with_beat(client_args()), b,
                 {"NETCHAN_TEST_STOP_AT=holding-lease:200"}};
  drainer awake{owner.where("stream"), true, with_beat(client_args()), b};
  auto sending = std::async(std::launch::async, [tx = tx, produced] {
    for (uint64_t v = 1; v <= produced; ++v)
      if (auto err = tx.send(v))
        return "at " + std::to_string(v) + ": " + netchan::to_string(err);
    return std::string{};
  });
  // The owner drops the silent link after connection-timeout and re-queues
  // the frozen receiver's lease: the event to wait for.
  auto deadline = clock_type::now() + 60s;
  auto st = rx.stats();
  while (st && st->requeued == 0 && clock_type::now() < deadline)
    st = rx.stats();
  BOOST_REQUIRE_MESSAGE(st && st->requeued > 0,
                        "the frozen receiver's lease never came back");
  // The other receiver gets everything, that lease included.
  if (!b.wait_distinct(produced, 60s)) {
    st = rx.stats();
    BOOST_FAIL("not every value arrived: distinct=" << b.copies().size()
               << " leased=" << (st ? st->leased : 0)
               << " buffered=" << (st ? st->buffered : 0)
               << "; awake receiver:\n" << awake.proc().transcript());
  }
  BOOST_REQUIRE(sending.wait_for(30s) == std::future_status::ready);
  auto send_error = sending.get();
  BOOST_REQUIRE_MESSAGE(send_error.empty(), send_error);
  auto printed_before = frozen.printed();
  BOOST_REQUIRE_EQUAL(::kill(frozen.proc().pid(), SIGCONT), 0);
  auto end = frozen.end(30s);
  BOOST_CHECK_MESSAGE(end.find("peer_down") == 0, end);
  // Awake again, it prints the lease it held (its commit then fails): one
  // value, which the other receiver got flagged. Nothing else.
  BOOST_TEST_MESSAGE("printed after waking: " << frozen.printed()
                                                 - printed_before);
  BOOST_CHECK_LE(frozen.printed() - printed_before, 1u);
  BOOST_REQUIRE(!tx.close());
  BOOST_CHECK_EQUAL(awake.end(30s), "ok");
  check_every_value_once_or_flagged(b, produced);
  check_owner_settled(rx);
}

BOOST_AUTO_TEST_SUITE_END()
