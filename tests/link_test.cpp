// Links that break and heal. Nodes dial each other through a TCP relay
// (support/relay.hpp) that cuts every connection through it on command,
// stalls it, refuses new ones or sends them elsewhere. A broken link is not
// a dead peer: the dialling side redials, the owner keeps the session for
// netchan.resume-timeout, and what was in flight is settled exactly once.
#define BOOST_TEST_MODULE link

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "books.hpp"
#include "nodes.hpp"
#include "relay.hpp"

using namespace std::chrono_literals;
namespace bdata = boost::unit_test::data;

using netchan::channel_stats;
using test::books;
using test::clock_type;
using test::drainer;

namespace link_test {

/// Counts the link events a node reports.
struct event_counts {
  std::atomic<size_t> lost{0};
  std::atomic<size_t> restored{0};
  std::atomic<size_t> expired{0};
  std::atomic<uint64_t> replayed{0};

  void watch(netchan::node& n) {
    n.watch_links([this](const netchan::link_event& ev) {
      switch (ev.what) {
        case netchan::link_event::kind::lost:
          ++lost;
          break;
        case netchan::link_event::kind::restored:
          ++restored;
          replayed += ev.replayed;
          break;
        case netchan::link_event::kind::expired:
          ++expired;
          break;
      }
    });
  }
};

/// Waits until `pred()` holds, checking every 10 ms; false at the deadline.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
  auto deadline = clock_type::now() + limit;
  while (!pred()) {
    if (clock_type::now() >= deadline)
      return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

/// Waits until the owner's stats satisfy `pred`; false after 30 s.
template <class Pred>
bool stats_reach(const netchan::receiver<uint64_t>& rx, Pred pred) {
  return eventually(
    [&] {
      auto st = rx.stats();
      return st && pred(*st);
    },
    30s);
}

/// The address of channel `name` as seen through the relay.
std::string through(const test::relay& relay, const std::string& name) {
  return "127.0.0.1:" + std::to_string(relay.port()) + "/" + name;
}

/// The values `sent` arrived once each, in the sender's order.
void check_exactly_once_in_order(const books& b, uint64_t sent) {
  auto order = b.order();
  auto copies = b.copies();
  size_t twice = 0;
  for (auto& [v, c] : copies)
    twice += c.size() - 1;
  BOOST_TEST_MESSAGE("sent=" << sent << " received=" << order.size()
                             << " distinct=" << copies.size()
                             << " duplicates=" << twice);
  BOOST_CHECK_EQUAL(copies.size(), sent);
  BOOST_CHECK_EQUAL(twice, 0u);
  BOOST_REQUIRE_EQUAL(order.size(), sent);
  for (uint64_t i = 0; i < sent; ++i)
    if (order[i] != i + 1)
      BOOST_FAIL("value #" << i + 1 << " arrived as " << order[i]
                           << ": out of order");
}

/// A sender process streaming 1..count; its last line says how it ended.
std::unique_ptr<test::child>
start_sender(const std::string& to, uint64_t count,
             const std::vector<std::string>& config) {
  auto proc = test::start_peer("stream",
                               {"--to", to, "--count", std::to_string(count)},
                               config);
  if (!proc->wait_for("streaming", 30s))
    BOOST_FAIL("sender did not start: " << proc->transcript());
  return proc;
}

struct fixture : test::cluster {};

/// The owner's counters and queues, for a failure message.
template <class T>
std::string owner_stats(const netchan::receiver<T>& rx) {
  auto st = rx.stats();
  return st ? caf::deep_to_string(*st) : netchan::to_string(st.error());
}

} // namespace link_test

using namespace link_test;

BOOST_FIXTURE_TEST_SUITE(links, fixture)

// Sender and receiver live in two processes that reach the owner only
// through the relay; it cuts every connection 10 times at random moments.
// Nothing may fail, nothing may be lost, nothing may arrive twice or out of
// order, and the owner ends with no lease and no credit out.
BOOST_DATA_TEST_CASE(a_stream_survives_ten_cuts,
                     bdata::make({uint64_t{0}, uint64_t{64}}), capacity) {
  constexpr uint64_t count = 20000;
  constexpr int cuts = 10;
  test::local_node owner{listen_args()};
  event_counts events;
  events.watch(owner.get());
  auto ch = owner.get().create<uint64_t>("stream", capacity);
  BOOST_REQUIRE(ch);
  test::relay relay{"127.0.0.1", owner.get().port()};
  auto via = through(relay, "stream");
  books b;
  drainer receiver{via, false, client_args(), b};
  auto sender = start_sender(via, count, client_args());
  std::mt19937 rng{std::random_device{}()};
  for (int k = 0; k < cuts; ++k) {
    // Somewhere in the k-th tenth of the stream.
    auto at = count * k / (cuts + 1)
              + std::uniform_int_distribution<uint64_t>{1, count / 12}(rng);
    BOOST_REQUIRE_MESSAGE(b.wait_distinct(at, 60s),
                          "stalled at " << b.distinct() << " before cut "
                                        << k + 1);
    relay.cut();
  }
  auto summary = sender->wait_for("sent ", 120s);
  BOOST_REQUIRE_MESSAGE(summary, "sender: " << sender->transcript());
  BOOST_CHECK_EQUAL(std::stoull(*summary), count);
  BOOST_CHECK_EQUAL(sender->wait(30s), 0);
  BOOST_REQUIRE_MESSAGE(b.wait_distinct(count, 120s),
                        "received " << b.distinct() << " of " << count);
  BOOST_REQUIRE(!ch->first.close());
  BOOST_CHECK_EQUAL(receiver.end(30s), "ok");
  check_exactly_once_in_order(b, count);
  test::check_owner_settled(ch->second);
  // Both parties lost their link at every cut, and every time it healed.
  BOOST_TEST_MESSAGE("cuts=" << relay.cuts() << " lost=" << events.lost
                             << " restored=" << events.restored
                             << " replayed=" << events.replayed);
  BOOST_CHECK_GE(events.restored.load(), static_cast<size_t>(cuts));
  BOOST_CHECK_EQUAL(events.expired.load(), 0u);
}

// The link stays down longer than the window (1 s here): the sender blocked
// for credit gets peer_down with its value; a sender blocked at a capacity-0
// owner gets peer_down or outcome_unknown (its send may have been taken in
// the gap); the owner ends both sessions; nothing arrives afterwards that
// was not reported sent, and nothing twice.
BOOST_DATA_TEST_CASE(a_gap_longer_than_the_window_fails_blocked_sends,
                     bdata::make({uint64_t{0}, uint64_t{4}}), capacity) {
  extra = {"--netchan.resume-timeout=1s"};
  test::local_node owner{listen_args()};
  event_counts events;
  events.watch(owner.get());
  auto ch = owner.get().create<uint64_t>("full", capacity);
  BOOST_REQUIRE(ch);
  test::relay relay{"127.0.0.1", owner.get().port()};
  auto via = through(relay, "full");
  auto sender = test::start_peer("stream", {"--to", via, "--count", "10"},
                                 client_args());
  // It fills the channel (no receiver), then blocks on value capacity + 1.
  if (capacity > 0) {
    BOOST_REQUIRE(sender->wait_for("streaming", 30s));
    BOOST_REQUIRE(stats_reach(ch->second, [&](const channel_stats& st) {
      return st.buffered == capacity;
    }));
  } else {
    BOOST_REQUIRE(stats_reach(ch->second, [](const channel_stats& st) {
      return st.parked_senders == 1;
    }));
  }
  relay.refuse(true);
  relay.cut();
  auto last = sender->wait_for("error: ", 30s);
  BOOST_REQUIRE_MESSAGE(last, "sender: " << sender->transcript());
  BOOST_TEST_MESSAGE("sender: " << *last);
  if (capacity > 0)
    BOOST_CHECK_MESSAGE(last->find("at 5:") == 0
                          && last->find("peer_down") != std::string::npos,
                        *last);
  else
    BOOST_CHECK_MESSAGE(last->find("at 1:") == 0
                          && (last->find("peer_down") != std::string::npos
                              || last->find("outcome_unknown")
                                   != std::string::npos),
                        *last);
  BOOST_CHECK_NE(sender->wait(30s), 0);
  BOOST_REQUIRE(eventually([&] { return events.expired >= 1; }, 30s));
  // What the owner has: exactly the values reported sent, once each.
  books b;
  for (;;) {
    auto v = ch->second.try_receive();
    if (!v || !*v)
      break;
    b.got(**v, false);
  }
  check_exactly_once_in_order(b, capacity);
  auto st = ch->second.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->parked_senders, 0u);
  BOOST_CHECK_EQUAL(st->leased, 0u);
  BOOST_CHECK_EQUAL(st->reserved, 0u);
}

// A receiver process killed (-9) while it holds a lease and started again
// under the same node name: the owner ends the old session at once, not
// after the window (60 s here, longer than this test may take), its lease
// goes back flagged, and the new process drains everything.
BOOST_AUTO_TEST_CASE(a_restarted_receiver_starts_a_new_session) {
  constexpr uint64_t count = 2000;
  extra = {"--netchan.resume-timeout=60s"};
  test::local_node owner{listen_args()};
  event_counts events;
  events.watch(owner.get());
  auto ch = owner.get().create<uint64_t>("work", 16);
  BOOST_REQUIRE(ch);
  std::thread producer{[tx = ch->first] {
    for (uint64_t v = 1; v <= count; ++v)
      if (tx.send(v))
        return;
  }};
  test::close_and_join<uint64_t> joiner{ch->first, producer};
  auto named = client_args();
  named.push_back("--netchan.name=receiver-1");
  books b;
  auto started = clock_type::now();
  {
    drainer first{owner.where("work"), true, named, b,
                  {"NETCHAN_TEST_DIE_AT=holding-lease:300"}};
    BOOST_REQUIRE(eventually([&] { return first.proc().try_wait(); }, 30s));
  }
  drainer second{owner.where("work"), true, named, b};
  BOOST_REQUIRE_MESSAGE(b.wait_distinct(count, 50s),
                        "received " << b.distinct() << " of " << count);
  BOOST_CHECK(clock_type::now() - started < 60s);
  BOOST_CHECK_GE(events.expired.load(), 1u);
  BOOST_REQUIRE(!ch->first.close());
  BOOST_CHECK_EQUAL(second.end(30s), "ok");
  test::check_every_value_once_or_flagged(b, count);
  test::check_owner_settled(ch->second);
}

// The redial's TLS handshake is cut twice half-way; the third one resumes
// the session, and the stream goes on with nothing lost or repeated.
BOOST_AUTO_TEST_CASE(a_cut_during_the_redial_handshake_is_redialled) {
  constexpr uint64_t count = 3000;
  test::local_node owner{listen_args()};
  event_counts events;
  events.watch(owner.get());
  auto ch = owner.get().create<uint64_t>("stream", 16);
  BOOST_REQUIRE(ch);
  test::relay relay{"127.0.0.1", owner.get().port()};
  auto via = through(relay, "stream");
  books b;
  std::thread receiver{[rx = ch->second, &b] {
    for (;;) {
      auto v = rx.receive();
      if (!v)
        return;
      b.got(*v, false);
    }
  }};
  test::close_and_join<uint64_t> stopper{ch->first, receiver};
  auto sender = start_sender(via, count, client_args());
  BOOST_REQUIRE(b.wait_distinct(count / 3, 60s));
  auto before = relay.accepted();
  relay.cut_handshakes(2, 300);
  relay.cut();
  auto summary = sender->wait_for("sent ", 120s);
  BOOST_REQUIRE_MESSAGE(summary, "sender: " << sender->transcript()
                                            << "; owner: "
                                            << owner_stats(ch->second));
  BOOST_REQUIRE(b.wait_distinct(count, 60s));
  check_exactly_once_in_order(b, count);
  BOOST_CHECK_GE(relay.accepted(), before + 3); // two cut, one through
  BOOST_CHECK_GE(events.restored.load(), 1u);
  BOOST_CHECK_EQUAL(events.expired.load(), 0u);
}

// After a cut, the relay sends the redial to another node that hosts a
// channel of the same name: with a certificate of another CA, the handshake
// fails and the sender's session ends after the window; with a trusted one,
// it is a different process, so the session ends at once. Neither gets a
// value.
BOOST_DATA_TEST_CASE(a_redial_that_reaches_another_node_does_not_resume,
                     bdata::make({false, true}), trusted) {
  extra = {"--netchan.resume-timeout=" + std::string{trusted ? "60s" : "1s"}};
  test::local_node owner{listen_args()};
  auto ch = owner.get().create<uint64_t>("stream", 4);
  BOOST_REQUIRE(ch);
  ::pki::temp_dir other_dir;
  test::pki other_ca{other_dir.path(), "other-ca"};
  auto impostor_certs = trusted ? pki.issue("impostor")
                                : other_ca.issue("impostor");
  auto impostor_args = impostor_certs.args();
  impostor_args.push_back("--netchan.listen=127.0.0.1:0");
  impostor_args.insert(impostor_args.end(), extra.begin(), extra.end());
  test::local_node impostor{impostor_args};
  auto fake = impostor.get().create<uint64_t>("stream", 4);
  BOOST_REQUIRE(fake);
  test::relay relay{"127.0.0.1", owner.get().port()};
  auto via = through(relay, "stream");
  auto sender = test::start_peer("stream", {"--to", via, "--count", "10"},
                                 client_args());
  BOOST_REQUIRE(sender->wait_for("streaming", 30s));
  BOOST_REQUIRE(stats_reach(ch->second, [](const channel_stats& st) {
    return st.buffered == 4;
  }));
  auto started = clock_type::now();
  relay.retarget("127.0.0.1", impostor.get().port());
  relay.cut();
  auto last = sender->wait_for("error: ", 45s);
  BOOST_REQUIRE_MESSAGE(last, "sender: " << sender->transcript());
  BOOST_TEST_MESSAGE("sender: " << *last);
  BOOST_CHECK_MESSAGE(last->find("peer_down") != std::string::npos, *last);
  if (trusted)
    BOOST_CHECK_MESSAGE(last->find("new process") != std::string::npos,
                        *last);
  BOOST_CHECK(clock_type::now() - started < 45s);
  auto st = fake->second.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->sent, 0u);
  BOOST_CHECK_EQUAL(st->buffered, 0u);
  BOOST_CHECK_EQUAL(st->parked_senders, 0u);
  BOOST_CHECK_GE(relay.accepted(), 2u);
}

// A send waiting at a capacity-0 owner when the link breaks: the resumed
// endpoint sends it again, and the owner adopts the one it holds instead of
// parking a second copy; a receiver then gets each value once.
BOOST_AUTO_TEST_CASE(a_send_waiting_across_a_cut_is_taken_once) {
  test::local_node owner{listen_args()};
  event_counts events;
  events.watch(owner.get());
  auto ch = owner.get().create<uint64_t>("rv", 0);
  BOOST_REQUIRE(ch);
  test::relay relay{"127.0.0.1", owner.get().port()};
  auto via = through(relay, "rv");
  auto sender = test::start_peer("stream", {"--to", via, "--count", "3"},
                                 client_args());
  BOOST_REQUIRE(stats_reach(ch->second, [](const channel_stats& st) {
    return st.parked_senders == 1;
  }));
  relay.cut();
  BOOST_REQUIRE(eventually([&] { return events.restored >= 1; }, 30s));
  // A second copy would arrive right after the first.
  books b;
  for (int i = 0; i < 3; ++i) {
    auto v = ch->second.receive_for(30s);
    BOOST_REQUIRE(v);
    b.got(*v, false);
  }
  auto summary = sender->wait_for("sent ", 30s);
  BOOST_REQUIRE_MESSAGE(summary, "sender: " << sender->transcript());
  BOOST_CHECK_EQUAL(sender->wait(30s), 0);
  BOOST_CHECK(!ch->second.try_receive()->has_value());
  check_exactly_once_in_order(b, 3);
}

// Deadlines still apply in a gap: a receive ends with timeout, a send that
// was waiting at a capacity-0 owner ends with outcome_unknown (the owner
// may have matched it) and is withdrawn there when the link heals; a send
// made during the gap never left, so it times out plainly. Then the same
// handles work again.
BOOST_AUTO_TEST_CASE(deadlines_apply_during_a_gap) {
  test::local_node owner{listen_args()};
  auto ch = owner.get().create<uint64_t>("rv", 0);
  BOOST_REQUIRE(ch);
  test::relay relay{"127.0.0.1", owner.get().port()};
  test::local_node me{client_args()};
  event_counts events;
  events.watch(me.get());
  auto [tx, rx] = me.open<uint64_t>(through(relay, "rv"));
  caf::error waiting;
  std::thread sender{[&, tx = tx] { waiting = tx.send_for(7, 2s); }};
  BOOST_REQUIRE(stats_reach(ch->second, [](const channel_stats& st) {
    return st.parked_senders == 1;
  }));
  relay.refuse(true);
  relay.cut();
  BOOST_REQUIRE(eventually([&] { return events.lost >= 1; }, 30s));
  auto started = clock_type::now();
  auto got = rx.receive_for(200ms);
  BOOST_REQUIRE(!got);
  BOOST_CHECK_MESSAGE(netchan::is(got.error(), netchan::errc::timeout),
                      netchan::to_string(got.error()));
  // A try does not wait for the link at all.
  auto tried = tx.try_send(8);
  // The message is evaluated even when the check passes: no error() then.
  BOOST_REQUIRE_MESSAGE(tried,
                        (tried ? "" : netchan::to_string(tried.error())));
  BOOST_CHECK(!*tried); // would block
  auto err = tx.send_for(8, 200ms);
  BOOST_CHECK_MESSAGE(netchan::is(err, netchan::errc::timeout),
                      netchan::to_string(err));
  sender.join();
  BOOST_CHECK_MESSAGE(netchan::is(waiting, netchan::errc::outcome_unknown),
                      netchan::to_string(waiting));
  BOOST_CHECK(clock_type::now() - started < 20s); // not the 30 s window
  relay.refuse(false);
  BOOST_REQUIRE(eventually([&] { return events.restored >= 1; }, 30s));
  // The send that ended in doubt was withdrawn at the owner, not matched.
  BOOST_REQUIRE(stats_reach(ch->second, [](const channel_stats& st) {
    return st.parked_senders == 0;
  }));
  std::thread again{[tx = tx] { static_cast<void>(tx.send(9)); }};
  auto v = ch->second.receive_for(30s);
  again.join();
  BOOST_REQUIRE(v);
  BOOST_CHECK_EQUAL(*v, 9u);
  BOOST_CHECK_EQUAL(events.expired.load(), 0u);
}

// The owner's window (1 s) is shorter than the dialling side's (60 s): when
// the link heals after 2 s, the owner has ended the session, and the
// handle says so with peer_down instead of resuming what the owner dropped.
BOOST_AUTO_TEST_CASE(a_session_the_owner_ended_is_not_resumed) {
  extra = {"--netchan.resume-timeout=1s"};
  test::local_node owner{listen_args()};
  event_counts events;
  events.watch(owner.get());
  auto ch = owner.get().create<uint64_t>("rv", 0);
  BOOST_REQUIRE(ch);
  test::relay relay{"127.0.0.1", owner.get().port()};
  auto args = client.args();
  args.push_back("--netchan.resume-timeout=60s");
  test::local_node me{args};
  auto [tx, rx] = me.open<uint64_t>(through(relay, "rv"));
  caf::error waiting;
  std::thread sender{[&, tx = tx] { waiting = tx.send(7); }};
  BOOST_REQUIRE(stats_reach(ch->second, [](const channel_stats& st) {
    return st.parked_senders == 1;
  }));
  relay.refuse(true);
  relay.cut();
  BOOST_REQUIRE(eventually([&] { return events.expired >= 1; }, 30s));
  relay.refuse(false);
  sender.join();
  BOOST_CHECK_MESSAGE(netchan::is(waiting, netchan::errc::outcome_unknown),
                      netchan::to_string(waiting));
  auto after = tx.send_for(8, 5s);
  BOOST_CHECK_MESSAGE(netchan::is(after, netchan::errc::peer_down)
                        && netchan::to_string(after).find("ended the session")
                             != std::string::npos,
                      netchan::to_string(after));
  BOOST_CHECK(!ch->second.try_receive()->has_value());
}

// A select does not resume: a receive case waiting on a channel across a
// broken link fires with peer_down, its offer is gone from the owner, and a
// value sent afterwards stays for the next receiver.
BOOST_AUTO_TEST_CASE(a_select_across_a_cut_ends_with_peer_down) {
  test::local_node owner{listen_args()};
  auto ch = owner.get().create<uint64_t>("sel", 0);
  BOOST_REQUIRE(ch);
  test::relay relay{"127.0.0.1", owner.get().port()};
  test::local_node me{client_args()};
  auto [tx, rx] = me.open<uint64_t>(through(relay, "sel"));
  netchan::selected r;
  std::thread selector{[&, rx = rx] {
    r = netchan::select_for({netchan::on_receive(rx)}, 30s);
  }};
  BOOST_REQUIRE(stats_reach(ch->second, [](const channel_stats& st) {
    return st.parked_receivers == 1;
  }));
  auto started = clock_type::now();
  relay.cut();
  selector.join();
  BOOST_CHECK_EQUAL(r.index, 0u);
  BOOST_CHECK_MESSAGE(netchan::is(r.error, netchan::errc::peer_down),
                      netchan::to_string(r.error));
  BOOST_CHECK(clock_type::now() - started < 20s); // not its 30 s timeout
  BOOST_REQUIRE(stats_reach(ch->second, [](const channel_stats& st) {
    return st.parked_receivers == 0;
  }));
  // The value goes to the plain receive that comes next, once.
  std::thread sender{[tx = ch->first] { static_cast<void>(tx.send(5)); }};
  auto v = rx.receive_for(30s);
  sender.join();
  BOOST_REQUIRE(v);
  BOOST_CHECK_EQUAL(*v, 5u);
}

BOOST_AUTO_TEST_SUITE_END()
