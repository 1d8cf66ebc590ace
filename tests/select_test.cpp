// select over channels: exactly one case fires, losing cases leave no trace,
// selects on both sides of a capacity-0 channel neither deadlock nor both
// win, and Go's fairness among ready cases; in one process and across
// three, with an owner killed mid-select.
#define BOOST_TEST_MODULE select
#include <boost/test/unit_test.hpp>

#include <future>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "nodes.hpp"
#include "select_loop.hpp"

using namespace std::chrono_literals;

namespace {

struct local_system {
  test::node_config cfg;
  std::unique_ptr<caf::actor_system> sys;

  local_system() {
    BOOST_REQUIRE(!cfg.load(std::vector<std::string>{}));
    sys = std::make_unique<caf::actor_system>(cfg);
  }

  template <class T>
  std::pair<netchan::sender<T>, netchan::receiver<T>>
  channel(size_t capacity) {
    auto ch = netchan::make_channel<T>(*sys, capacity);
    BOOST_REQUIRE(ch);
    return *ch;
  }
};

using netchan::on_receive;
using netchan::on_send;

} // namespace

BOOST_FIXTURE_TEST_SUITE(select_in_one_process, local_system)

BOOST_AUTO_TEST_CASE(a_ready_receive_fires_and_takes_its_value) {
  auto [tx, rx] = channel<int32_t>(1);
  auto [other_tx, other_rx] = channel<int32_t>(0);
  BOOST_REQUIRE(!tx.send(7));
  auto r = netchan::select({on_receive(other_rx), on_receive(rx)});
  BOOST_REQUIRE_MESSAGE(!r.error, netchan::to_string(r.error));
  BOOST_CHECK_EQUAL(r.index, 1u);
  BOOST_CHECK_EQUAL(*r.value(rx), 7);
  BOOST_CHECK_EQUAL(*rx.len(), 0u);
  auto st = rx.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->leased, 0u); // acknowledged
  BOOST_CHECK_EQUAL(st->received, 1u);
}

BOOST_AUTO_TEST_CASE(default_with_nothing_ready_returns_at_once_and_takes_nothing) {
  auto [tx, rx] = channel<int32_t>(0);
  auto [full_tx, full_rx] = channel<int32_t>(1);
  BOOST_REQUIRE(!full_tx.send(1));
  auto r = netchan::try_select({on_receive(rx), on_send(full_tx, 2)});
  BOOST_CHECK_EQUAL(r.index, netchan::no_case);
  BOOST_CHECK(netchan::is(r.error, netchan::errc::would_block));
  auto st = full_rx.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->buffered, 1u);
  BOOST_CHECK_EQUAL(st->parked_senders, 0u);
  BOOST_CHECK_EQUAL(*full_rx.receive(), 1);
  auto again = full_rx.try_receive();
  BOOST_REQUIRE(again);
  BOOST_CHECK(!*again); // the losing send delivered nothing
  auto rst = rx.stats();
  BOOST_REQUIRE(rst);
  BOOST_CHECK_EQUAL(rst->parked_receivers, 0u);
}

BOOST_AUTO_TEST_CASE(default_with_a_ready_case_fires_it) {
  auto [tx, rx] = channel<int32_t>(4);
  auto r = netchan::try_select({on_send(tx, 5)});
  BOOST_REQUIRE_MESSAGE(!r.error, netchan::to_string(r.error));
  BOOST_CHECK_EQUAL(r.index, 0u);
  BOOST_CHECK_EQUAL(*rx.receive(), 5);
}

// A plain send leaves its endpoint holding credit (the rest of its window);
// a select's send case on the same handle goes to the owner itself, and
// finds those slots given back rather than reserved for the endpoint.
BOOST_AUTO_TEST_CASE(a_send_case_may_use_the_credit_of_its_own_handle) {
  auto [tx, rx] = channel<int32_t>(4);
  BOOST_REQUIRE(!tx.send(1));
  auto st = rx.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->buffered + st->reserved, 4u); // full, for others
  auto r = netchan::try_select({on_send(tx, 2)});
  BOOST_REQUIRE_MESSAGE(!r.error, netchan::to_string(r.error));
  BOOST_CHECK_EQUAL(r.index, 0u);
  BOOST_CHECK_EQUAL(*rx.receive(), 1);
  BOOST_CHECK_EQUAL(*rx.receive(), 2);
}

BOOST_AUTO_TEST_CASE(a_timeout_withdraws_everything_it_offered) {
  auto [tx, rx] = channel<int32_t>(0);
  auto [empty_tx, empty_rx] = channel<int32_t>(0);
  auto r = netchan::select_for({on_send(tx, 1), on_receive(empty_rx)}, 50ms);
  BOOST_CHECK_EQUAL(r.index, netchan::no_case);
  BOOST_CHECK(netchan::is(r.error, netchan::errc::timeout));
  // Withdrawn: a receiver arriving now finds no sender, a sender no
  // receiver.
  auto got = rx.try_receive();
  BOOST_REQUIRE(got);
  BOOST_CHECK(!*got);
  auto sent = empty_tx.try_send(2);
  BOOST_REQUIRE(sent);
  BOOST_CHECK(!*sent);
}

BOOST_AUTO_TEST_CASE(closed_channels_fire_with_closed) {
  auto [tx, rx] = channel<int32_t>(1);
  BOOST_REQUIRE(!tx.close());
  auto r = netchan::select({on_receive(rx)});
  BOOST_CHECK_EQUAL(r.index, 0u);
  BOOST_CHECK(netchan::is(r.error, netchan::errc::closed));
  auto s = netchan::select({on_send(tx, 3)});
  BOOST_CHECK_EQUAL(s.index, 0u);
  BOOST_CHECK(netchan::is(s.error, netchan::errc::closed));
}

BOOST_AUTO_TEST_CASE(a_send_case_waits_for_a_receiver_at_capacity_0) {
  auto [tx, rx] = channel<int32_t>(0);
  auto [never_tx, never_rx] = channel<int32_t>(0);
  auto selecting = std::async(std::launch::async, [tx = tx, never_rx = never_rx] {
    return netchan::select({on_receive(never_rx), on_send(tx, 42)});
  });
  BOOST_CHECK_EQUAL(*rx.receive(), 42);
  BOOST_REQUIRE(selecting.wait_for(30s) == std::future_status::ready);
  auto r = selecting.get();
  BOOST_CHECK_MESSAGE(!r.error, netchan::to_string(r.error));
  BOOST_CHECK_EQUAL(r.index, 1u);
}

BOOST_AUTO_TEST_CASE(ready_cases_are_chosen_fairly) {
  auto [a_tx, a_rx] = channel<int32_t>(2000);
  auto [b_tx, b_rx] = channel<int32_t>(2000);
  for (int i = 0; i < 2000; ++i) {
    BOOST_REQUIRE(!a_tx.send(i));
    BOOST_REQUIRE(!b_tx.send(i));
  }
  size_t fired[2] = {0, 0};
  for (int i = 0; i < 2000; ++i) {
    auto r = netchan::select({on_receive(a_rx), on_receive(b_rx)});
    BOOST_REQUIRE_MESSAGE(!r.error, netchan::to_string(r.error));
    ++fired[r.index];
  }
  BOOST_TEST_MESSAGE("case 0 fired " << fired[0] << ", case 1 " << fired[1]);
  BOOST_CHECK_GE(fired[0], 800u);
  BOOST_CHECK_GE(fired[1], 800u);
  BOOST_CHECK_EQUAL(*a_rx.len() + *b_rx.len(), 2000u);
}

BOOST_AUTO_TEST_CASE(selects_on_both_sides_of_capacity_0_channels) {
  // A: send on x or receive on y; B: receive on x or send on y. Each round
  // one value crosses, one way or the other; naive selects deadlock here
  // or let both sides win.
  auto [x_tx, x_rx] = channel<int32_t>(0);
  auto [y_tx, y_rx] = channel<int32_t>(0);
  const int rounds = 1000;
  auto side = [](netchan::sender<int32_t> out, netchan::receiver<int32_t> in,
                 int base) {
    std::vector<int32_t> got;
    int next = 0;
    for (int round = 0; round < rounds; ++round) {
      auto r = netchan::select({on_send(out, base + next), on_receive(in)});
      if (r.error)
        throw std::runtime_error(netchan::to_string(r.error));
      if (r.index == 0)
        ++next;
      else
        got.push_back(*r.value(in));
    }
    return std::make_pair(next, got);
  };
  auto a = std::async(std::launch::async, side, x_tx, y_rx, 0);
  auto b = std::async(std::launch::async, side, y_tx, x_rx, 1000000);
  BOOST_REQUIRE(a.wait_for(120s) == std::future_status::ready);
  BOOST_REQUIRE(b.wait_for(120s) == std::future_status::ready);
  auto [a_sent, a_got] = a.get();
  auto [b_sent, b_got] = b.get();
  BOOST_TEST_MESSAGE("A sent " << a_sent << ", B sent " << b_sent);
  // Everything A sent, B got, in order, once; and the other way round.
  BOOST_REQUIRE_EQUAL(b_got.size(), static_cast<size_t>(a_sent));
  for (int i = 0; i < a_sent; ++i)
    BOOST_CHECK_EQUAL(b_got[i], i);
  BOOST_REQUIRE_EQUAL(a_got.size(), static_cast<size_t>(b_sent));
  for (int i = 0; i < b_sent; ++i)
    BOOST_CHECK_EQUAL(a_got[i], 1000000 + i);
  BOOST_CHECK_EQUAL(a_sent + b_sent, rounds);
}

BOOST_AUTO_TEST_CASE(an_actor_selects_without_blocking) {
  auto [tx, rx] = channel<int32_t>(1);
  std::promise<netchan::selected> done;
  sys->spawn([rx = rx, &done](caf::event_based_actor* self) {
    netchan::async_select(self, {on_receive(rx)},
                          [&done](netchan::selected r) {
                            done.set_value(std::move(r));
                          });
  });
  BOOST_REQUIRE(!tx.send(9));
  auto f = done.get_future();
  BOOST_REQUIRE(f.wait_for(30s) == std::future_status::ready);
  auto r = f.get();
  BOOST_CHECK_EQUAL(r.index, 0u);
  BOOST_CHECK_EQUAL(*r.value(rx), 9);
}

BOOST_AUTO_TEST_SUITE_END()

// -- across processes -------------------------------------------------------------

namespace {

/// A killed owner looks like a broken link until the resume window passes:
/// short here.
struct cluster_fixture : test::cluster {
  cluster_fixture() {
    extra = {"--netchan.resume-timeout=1s"};
  }
};

/// Receives from every channel with select until each is closed; returns
/// the values, each tagged with its channel's index.
std::vector<std::pair<size_t, uint64_t>>
select_until_closed(std::vector<netchan::receiver<uint64_t>> rxs) {
  std::vector<std::pair<size_t, uint64_t>> got;
  auto err = test::select_until_closed(
    rxs, [&](size_t i, uint64_t v) { got.emplace_back(i, v); });
  if (!err.empty())
    throw std::runtime_error(err);
  return got;
}

} // namespace

BOOST_FIXTURE_TEST_CASE(two_selectors_compete_over_four_channels_on_three_processes,
                        cluster_fixture) {
  const uint64_t per_channel = 1250;
  test::local_node me{listen_args()};
  test::peer owner{{"--channel", "c2:u64:0", "--channel", "c3:u64:16"},
                   listen_args()};
  auto c0 = me.get().create<uint64_t>("c0", 0);
  auto c1 = me.get().create<uint64_t>("c1", 16);
  BOOST_REQUIRE(c0 && c1);
  auto c2 = test::open_or_fail<uint64_t>(me.get(), owner.where("c2"));
  auto c3 = test::open_or_fail<uint64_t>(me.get(), owner.where("c3"));
  // Receivers: two selectors here, a plain receiver in a third process.
  std::vector<netchan::receiver<uint64_t>> rxs{c0->second, c1->second,
                                               c2.second, c3.second};
  auto a = std::async(std::launch::async, select_until_closed, rxs);
  auto b = std::async(std::launch::async, select_until_closed, rxs);
  auto plain = test::start_peer("drain", {"--from", owner.where("c3")},
                                client_args());
  BOOST_REQUIRE(plain->wait_for("draining", 30s));
  // Senders: threads here for c0, c2, c3; another process for c1.
  auto streamer = test::start_peer(
    "stream", {"--to", me.where("c1"), "--count", std::to_string(per_channel)},
    client_args());
  auto send_all = [per_channel](netchan::sender<uint64_t> tx) {
    for (uint64_t i = 1; i <= per_channel; ++i)
      if (auto err = tx.send(i))
        return netchan::to_string(err);
    return std::string{};
  };
  std::vector<std::future<std::string>> senders;
  for (auto tx : {c0->first, c2.first, c3.first})
    senders.push_back(std::async(std::launch::async, send_all, tx));
  for (auto& s : senders) {
    BOOST_REQUIRE(s.wait_for(120s) == std::future_status::ready);
    auto err = s.get();
    BOOST_REQUIRE_MESSAGE(err.empty(), err);
  }
  BOOST_REQUIRE(streamer->wait_for("sent ", 120s));
  for (auto tx : {c0->first, c1->first, c2.first, c3.first})
    BOOST_REQUIRE(!tx.close());
  BOOST_REQUIRE(a.wait_for(120s) == std::future_status::ready);
  BOOST_REQUIRE(b.wait_for(120s) == std::future_status::ready);
  std::map<std::pair<size_t, uint64_t>, int> seen;
  auto got_a = a.get();
  auto got_b = b.get();
  for (auto& v : got_a)
    ++seen[v];
  for (auto& v : got_b)
    ++seen[v];
  size_t by_plain = 0;
  for (;;) {
    auto line = plain->read_line(30s);
    BOOST_REQUIRE_MESSAGE(line, plain->transcript());
    if (line->rfind("end ", 0) == 0) {
      BOOST_CHECK_EQUAL(*line, "end ok");
      break;
    }
    if (line->rfind("got ", 0) == 0) {
      ++seen[{3, std::stoull(line->substr(4))}];
      ++by_plain;
    }
  }
  BOOST_TEST_MESSAGE("selector A " << got_a.size() << ", selector B "
                                   << got_b.size() << ", plain receiver "
                                   << by_plain);
  BOOST_CHECK_EQUAL(seen.size(), 4 * per_channel);
  for (auto& [v, n] : seen)
    BOOST_CHECK_MESSAGE(n == 1, "channel " << v.first << " value " << v.second
                                           << " received " << n << " times");
  for (size_t ch = 0; ch < 4; ++ch)
    for (uint64_t i = 1; i <= per_channel; ++i)
      BOOST_CHECK_MESSAGE(seen.count({ch, i}) == 1,
                          "channel " << ch << " value " << i << " missing");
}

BOOST_FIXTURE_TEST_CASE(an_owner_killed_mid_select_loses_nothing,
                        cluster_fixture) {
  test::local_node me{client_args()};
  test::peer owner{{"--channel", "k:u64:0"}, listen_args(),
                   {"NETCHAN_TEST_DIE_AT=owner-handed:300"}};
  auto k = test::open_or_fail<uint64_t>(me.get(), owner.where("k"));
  auto y = netchan::make_channel<uint64_t>(*me.sys, 4);
  BOOST_REQUIRE(y);
  const uint64_t on_y = 2000;
  struct outcome {
    std::set<uint64_t> completed, in_doubt;
    std::string other;
  };
  auto sending_k = std::async(std::launch::async, [tx = k.first] {
    outcome out;
    for (uint64_t i = 1;; ++i) {
      auto err = tx.send(i);
      if (!err) {
        out.completed.insert(i);
        continue;
      }
      if (netchan::is(err, netchan::errc::outcome_unknown))
        out.in_doubt.insert(i);
      else if (!netchan::is(err, netchan::errc::peer_down))
        out.other = netchan::to_string(err);
      return out;
    }
  });
  auto sending_y = std::async(std::launch::async, [tx = y->first, on_y] {
    for (uint64_t i = 1; i <= on_y; ++i)
      if (tx.send(i))
        return false;
    return !tx.close();
  });
  // One selector over both: k's case fires with peer_down once its owner
  // is gone, then the select goes on with y alone.
  std::set<uint64_t> got_k;
  std::vector<uint64_t> got_y;
  bool k_open = true;
  bool y_open = true;
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while ((k_open || y_open) && std::chrono::steady_clock::now() < deadline) {
    std::vector<netchan::select_case> cases;
    std::vector<int> which;
    if (k_open) {
      cases.push_back(on_receive(k.second));
      which.push_back(0);
    }
    if (y_open) {
      cases.push_back(on_receive(y->second));
      which.push_back(1);
    }
    auto r = netchan::select(std::move(cases));
    BOOST_REQUIRE(r.index != netchan::no_case);
    auto ch = which[r.index];
    if (r.error) {
      if (ch == 0) {
        BOOST_CHECK_MESSAGE(netchan::is(r.error, netchan::errc::peer_down),
                            netchan::to_string(r.error));
        k_open = false;
      } else {
        BOOST_CHECK(netchan::is(r.error, netchan::errc::closed));
        y_open = false;
      }
      continue;
    }
    if (ch == 0)
      BOOST_CHECK(got_k.insert(*r.value(k.second)).second);
    else
      got_y.push_back(*r.value(y->second));
  }
  BOOST_REQUIRE_MESSAGE(!k_open && !y_open, "k open " << k_open << ", y open " << y_open << ", got y " << got_y.size() << ", got k " << got_k.size());
  BOOST_REQUIRE(sending_k.wait_for(60s) == std::future_status::ready);
  BOOST_REQUIRE(sending_y.wait_for(60s) == std::future_status::ready);
  BOOST_CHECK(sending_y.get());
  auto out = sending_k.get();
  BOOST_CHECK_MESSAGE(out.other.empty(), out.other);
  BOOST_CHECK_EQUAL(owner.proc->wait(30s), 128 + SIGKILL);
  BOOST_TEST_MESSAGE("k: completed " << out.completed.size() << ", in doubt "
                                     << out.in_doubt.size() << ", received "
                                     << got_k.size());
  // Capacity 0: every completed send was received; nothing arrived that
  // was not sent (completed or in doubt).
  for (auto v : out.completed)
    BOOST_CHECK_MESSAGE(got_k.count(v) == 1, "completed " << v << " lost");
  for (auto v : got_k)
    BOOST_CHECK(out.completed.count(v) + out.in_doubt.count(v) == 1);
  BOOST_REQUIRE_EQUAL(got_y.size(), on_y);
  for (uint64_t i = 0; i < on_y; ++i)
    BOOST_CHECK_EQUAL(got_y[i], i + 1);
}

namespace {

/// Every "got I V" line of a receiver process until its "end ..." line:
/// (channel index, value) pairs, and the end line ("" if none came).
struct drained {
  std::vector<std::pair<size_t, uint64_t>> got;
  std::string end;
};

drained read_until_end(test::child& proc, size_t channel_of_plain_got,
                       std::chrono::seconds timeout) {
  drained out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    auto line = proc.read_line(left);
    if (!line)
      return out;
    if (line->rfind("end ", 0) == 0) {
      out.end = line->substr(4);
      return out;
    }
    if (line->rfind("got ", 0) != 0)
      continue;
    std::istringstream words{line->substr(4)};
    size_t channel = channel_of_plain_got;
    uint64_t value = 0;
    if (channel_of_plain_got == netchan::no_case)
      words >> channel;
    words >> value;
    out.got.emplace_back(channel, value);
  }
  return out;
}

} // namespace

// Issue 15's shape: channel a (capacity 0) and b (capacity 1) on two owner
// nodes; threads here select over sending to both, threads of another
// process select over receiving from both, and plain senders and receivers
// of further processes use each channel beside them. A selector whose claim
// at one owner was dropped while it had not answered it must not end up
// holding forever: that wedged b with a free slot and waiting receivers.
// Every select returns, every value is received once, close ends everyone.
BOOST_FIXTURE_TEST_CASE(selects_on_both_sides_of_two_owners_never_wedge_a_channel,
                        cluster_fixture) {
  const uint64_t rounds = 400;    // per selecting thread here
  const size_t selecting = 4;     // threads here
  const uint64_t plain = 300;     // plain sends to each channel
  test::peer owner_a{{"--channel", "a:u64:0"}, listen_args()};
  test::peer owner_b{{"--channel", "b:u64:1"}, listen_args()};
  test::local_node me{client_args()};
  auto a = test::open_or_fail<uint64_t>(me.get(), owner_a.where("a"));
  auto b = test::open_or_fail<uint64_t>(me.get(), owner_b.where("b"));
  auto selectors = test::start_peer(
    "select-drain",
    {"--from", owner_a.where("a"), "--from", owner_b.where("b"), "--threads",
     "3"},
    client_args());
  auto drain_a = test::start_peer("drain", {"--from", owner_a.where("a")},
                                  client_args());
  auto drain_b = test::start_peer("drain", {"--from", owner_b.where("b")},
                                  client_args());
  for (auto* p : {selectors.get(), drain_a.get(), drain_b.get()})
    BOOST_REQUIRE_MESSAGE(p->wait_for("draining", 30s), p->transcript());
  // Their output is read while they run: a full pipe would stall them.
  auto read_selectors = std::async(std::launch::async, read_until_end,
                                   std::ref(*selectors), netchan::no_case,
                                   180s);
  auto read_a = std::async(std::launch::async, read_until_end,
                           std::ref(*drain_a), 0, 180s);
  auto read_b = std::async(std::launch::async, read_until_end,
                           std::ref(*drain_b), 1, 180s);
  auto stream_a = test::start_peer(
    "stream", {"--to", owner_a.where("a"), "--count", std::to_string(plain)},
    client_args());
  auto stream_b = test::start_peer(
    "stream", {"--to", owner_b.where("b"), "--count", std::to_string(plain)},
    client_args());
  // Thread t sends (100 + t) << 32 | round: apart from the plain 1..plain.
  auto select_sends = [&](size_t t) {
    std::vector<std::pair<size_t, uint64_t>> sent;
    for (uint64_t round = 1; round <= rounds; ++round) {
      auto v = (uint64_t{100 + t} << 32) | round;
      auto r = netchan::select({on_send(a.first, v), on_send(b.first, v)});
      if (r.error)
        throw std::runtime_error(netchan::to_string(r.error));
      sent.emplace_back(r.index, v);
    }
    return sent;
  };
  std::vector<std::future<std::vector<std::pair<size_t, uint64_t>>>> sends;
  for (size_t t = 0; t < selecting; ++t)
    sends.push_back(std::async(std::launch::async, select_sends, t));
  std::map<std::pair<size_t, uint64_t>, int> expected;
  for (auto& s : sends) {
    if (s.wait_for(120s) != std::future_status::ready) {
      // The state at the wedge, then close: every waiting party must end.
      auto sa = a.second.stats();
      auto sb = b.second.stats();
      BOOST_ERROR("a select did not return within 120 s; a: "
                  << (sa ? caf::deep_to_string(*sa) : "?")
                  << "; b: " << (sb ? caf::deep_to_string(*sb) : "?"));
      static_cast<void>(a.first.close());
      static_cast<void>(b.first.close());
    }
    BOOST_REQUIRE(s.wait_for(60s) == std::future_status::ready);
    for (auto& v : s.get())
      ++expected[v];
  }
  for (auto* s : {stream_a.get(), stream_b.get()})
    BOOST_REQUIRE_MESSAGE(s->wait_for("sent ", 120s), s->transcript());
  for (uint64_t i = 1; i <= plain; ++i) {
    ++expected[{0, i}];
    ++expected[{1, i}];
  }
  BOOST_REQUIRE(!a.first.close());
  BOOST_REQUIRE(!b.first.close());
  std::map<std::pair<size_t, uint64_t>, int> seen;
  for (auto* r : {&read_selectors, &read_a, &read_b}) {
    BOOST_REQUIRE(r->wait_for(200s) == std::future_status::ready);
    auto d = r->get();
    BOOST_CHECK_EQUAL(d.end, "ok");
    for (auto& v : d.got)
      ++seen[v];
  }
  size_t on_b = 0;
  for (auto& [v, n] : expected)
    on_b += v.first == 1 ? 1 : 0;
  BOOST_TEST_MESSAGE("values on a " << expected.size() - on_b << ", on b "
                                    << on_b);
  BOOST_CHECK_EQUAL(seen.size(), expected.size());
  for (auto& [v, n] : expected)
    BOOST_CHECK_MESSAGE(seen[v] == 1, "channel " << v.first << " value "
                                                 << v.second << " received "
                                                 << seen[v] << " times");
  for (auto& [v, n] : seen)
    BOOST_CHECK_MESSAGE(expected.count(v) == 1,
                        "channel " << v.first << " value " << v.second
                                   << " received but never sent");
}
