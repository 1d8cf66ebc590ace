// sender<T> / receiver<T> / lease<T> from real threads and from actors, on
// CAF's real scheduler. Waits are on events (a blocking call's return), and
// deadlines are the ones under test, never sleeps.
#define BOOST_TEST_MODULE handles
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <future>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "netchan/netchan.hpp"

using namespace std::chrono_literals;
namespace bdata = boost::unit_test::data;

/// A user type that crosses channels through its `inspect` overload.
struct job {
  std::string name;
  std::vector<uint8_t> data;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job& x) {
  return f(caf::meta::type_name("job"), x.name, x.data);
}

/// A type that nobody registered with CAF.
struct unregistered {
  int x = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, unregistered& x) {
  return f(x.x);
}

namespace {

struct test_config : netchan::config {
  test_config() {
    add_message_type<job>("job");
    max_message_size = 4096;
  }
};

/// An actor system per test; handles must go before it does.
struct fixture {
  test_config cfg;
  caf::actor_system sys{cfg};
};

template <class T>
std::pair<netchan::sender<T>, netchan::receiver<T>>
channel(caf::actor_system& sys, size_t cap) {
  auto ch = netchan::make_channel<T>(sys, cap);
  if (!ch)
    BOOST_FAIL("make_channel: " << netchan::to_string(ch.error()));
  return *ch;
}

const std::vector<size_t> capacities{0, 1, 16};

} // namespace

BOOST_DATA_TEST_CASE(values_cross_threads_in_order, bdata::make(capacities),
                     cap) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, cap);
  BOOST_CHECK_EQUAL(tx.cap(), cap);
  auto producer = std::async(std::launch::async, [tx = tx] {
    for (int i = 0; i < 500; ++i)
      if (auto err = tx.send(i))
        return err;
    return tx.close();
  });
  int expected = 0;
  for (auto x : rx)
    BOOST_REQUIRE_EQUAL(x, expected++);
  BOOST_CHECK_EQUAL(expected, 500);
  auto err = producer.get();
  BOOST_CHECK_MESSAGE(!err, netchan::to_string(err));
}

BOOST_AUTO_TEST_CASE(a_user_struct_travels_through_a_channel) {
  fixture f;
  auto [tx, rx] = channel<job>(f.sys, 1);
  BOOST_REQUIRE(!tx.send(job{"hash", {1, 2, 3, 255}}));
  auto got = rx.receive();
  BOOST_REQUIRE(got);
  BOOST_CHECK_EQUAL(got->name, "hash");
  BOOST_CHECK(got->data == (std::vector<uint8_t>{1, 2, 3, 255}));
}

BOOST_AUTO_TEST_CASE(an_unregistered_type_is_refused_with_the_fix) {
  fixture f;
  auto ch = netchan::make_channel<unregistered>(f.sys, 1);
  BOOST_REQUIRE(!ch);
  BOOST_CHECK(netchan::is(ch.error(), netchan::errc::invalid_argument));
  BOOST_CHECK(netchan::to_string(ch.error()).find("add_message_type")
              != std::string::npos);
}

BOOST_AUTO_TEST_CASE(an_unbuffered_send_for_without_receiver_times_out) {
  fixture f;
  auto [tx, rx] = channel<std::string>(f.sys, 0);
  std::string value = "kept";
  auto err = tx.send_for(value, 50ms);
  BOOST_CHECK(netchan::is(err, netchan::errc::timeout));
  BOOST_CHECK_EQUAL(value, "kept");
  BOOST_CHECK_EQUAL(*tx.len(), 0u);
  // Withdrawn, so never delivered later.
  auto late = rx.try_receive();
  BOOST_REQUIRE(late);
  BOOST_CHECK(!late->has_value());
}

BOOST_AUTO_TEST_CASE(an_unbuffered_send_for_completes_with_a_receiver) {
  fixture f;
  auto [tx, rx] = channel<std::string>(f.sys, 0);
  auto receiver = std::async(std::launch::async, [rx = rx] {
    return rx.receive();
  });
  auto err = tx.send_for("hello", 30s);
  BOOST_CHECK_MESSAGE(!err, netchan::to_string(err));
  auto got = receiver.get();
  BOOST_REQUIRE(got);
  BOOST_CHECK_EQUAL(*got, "hello");
}

BOOST_AUTO_TEST_CASE(a_full_buffered_send_for_times_out_and_len_stays_cap) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, 2);
  BOOST_REQUIRE(!tx.send(1));
  BOOST_REQUIRE(!tx.send(2));
  BOOST_CHECK(netchan::is(tx.send_for(3, 20ms), netchan::errc::timeout));
  BOOST_CHECK_EQUAL(*tx.len(), 2u);
  BOOST_CHECK_EQUAL(*rx.receive(), 1);
  BOOST_CHECK_EQUAL(*rx.receive(), 2);
  BOOST_CHECK(!rx.try_receive()->has_value());
}

BOOST_DATA_TEST_CASE(receive_for_times_out_without_a_value,
                     bdata::make(capacities), cap) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, cap);
  auto got = rx.receive_for(20ms);
  BOOST_REQUIRE(!got);
  BOOST_CHECK(netchan::is(got.error(), netchan::errc::timeout));
  // The withdrawn receive did not swallow the next value.
  auto producer = std::async(std::launch::async, [tx = tx] {
    return tx.send(42);
  });
  auto next = rx.receive_for(30s);
  BOOST_REQUIRE(next);
  BOOST_CHECK_EQUAL(*next, 42);
  BOOST_CHECK(!producer.get());
}

BOOST_DATA_TEST_CASE(try_send_and_try_receive_never_wait,
                     bdata::make(capacities), cap) {
  fixture f;
  auto [tx, rx] = channel<std::string>(f.sys, cap);
  BOOST_CHECK(!rx.try_receive()->has_value());
  for (size_t i = 0; i < cap; ++i)
    BOOST_CHECK(*tx.try_send("x"));
  const std::string value = "untouched";
  auto sent = tx.try_send(value);
  BOOST_REQUIRE(sent);
  BOOST_CHECK(!*sent); // would block
  BOOST_CHECK_EQUAL(value, "untouched");
  BOOST_CHECK_EQUAL(*tx.len(), cap);
}

BOOST_DATA_TEST_CASE(close_drains_then_reports_closed_and_refuses_sends,
                     bdata::make(capacities), cap) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, cap);
  for (size_t i = 0; i < cap; ++i)
    BOOST_REQUIRE(!tx.send(static_cast<int>(i)));
  BOOST_REQUIRE(!tx.close());
  for (size_t i = 0; i < cap; ++i)
    BOOST_CHECK_EQUAL(*rx.receive(), static_cast<int>(i));
  auto end = rx.receive();
  BOOST_REQUIRE(!end);
  BOOST_CHECK(netchan::is(end.error(), netchan::errc::closed));
  BOOST_CHECK(netchan::is(tx.send(7), netchan::errc::closed));
  BOOST_CHECK(netchan::is(tx.try_send(7).error(), netchan::errc::closed));
  BOOST_CHECK(netchan::is(tx.close(), netchan::errc::closed));
}

BOOST_DATA_TEST_CASE(close_wakes_a_blocked_receiver_and_a_blocked_sender,
                     bdata::make(capacities), cap) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, cap);
  auto other_rx = rx;
  for (size_t i = 0; i < cap; ++i)
    BOOST_REQUIRE(!tx.send(1));
  // A blocked sender (the buffer is full) ...
  auto blocked_send = std::async(std::launch::async, [tx = tx] {
    return tx.send(99);
  });
  // Wait for the event: it parked (for a slot, or for credit at capacity N).
  auto st = tx.stats();
  while (st && st->parked_senders + st->parked_reserves == 0)
    st = tx.stats();
  BOOST_REQUIRE(!tx.close());
  BOOST_CHECK(netchan::is(blocked_send.get(), netchan::errc::closed));
  for (size_t i = 0; i < cap; ++i)
    BOOST_CHECK_EQUAL(*rx.receive(), 1);
  // ... and a receiver blocked on the drained, closed channel.
  auto end = other_rx.receive();
  BOOST_CHECK(netchan::is(end.error(), netchan::errc::closed));
}

BOOST_DATA_TEST_CASE(a_committed_lease_is_gone_and_a_dropped_one_comes_back,
                     bdata::make(capacities), cap) {
  fixture f;
  auto [tx, rx] = channel<std::string>(f.sys, cap);
  auto producer = std::async(std::launch::async, [tx = tx] {
    auto e1 = tx.send("a");
    return e1 ? e1 : tx.send("b");
  });
  {
    auto first = rx.receive_lease();
    BOOST_REQUIRE(first);
    BOOST_CHECK_EQUAL(first->value(), "a");
    BOOST_CHECK(!first->redelivered());
    // dropped without commit: re-queued at the head
  }
  // "a" is re-queued at the head of the channel; a receiver that already
  // fetched "b" ahead (capacity 16) may see "b" first. Either way: "a"
  // exactly once more, flagged, and "b" once, not flagged.
  std::map<std::string, bool> seen; // value -> redelivered
  for (int i = 0; i < 2; ++i) {
    auto l = rx.receive_lease();
    BOOST_REQUIRE(l);
    BOOST_CHECK(seen.count(l->value()) == 0);
    seen[l->value()] = l->redelivered();
    BOOST_CHECK(!l->commit());
    BOOST_CHECK(netchan::is(l->commit(), netchan::errc::lease_settled));
  }
  BOOST_CHECK(seen == (std::map<std::string, bool>{{"a", true}, {"b", false}}));
  BOOST_CHECK(!producer.get());
  auto st = rx.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->requeued, 1u);
  BOOST_CHECK_EQUAL(st->received, 2u);
  BOOST_CHECK_EQUAL(st->leased, 0u);
}

BOOST_AUTO_TEST_CASE(a_lease_held_by_a_destroyed_receiver_is_requeued) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, 4);
  BOOST_REQUIRE(!tx.send(5));
  auto keeper = rx; // a second handle family would have its own endpoint
  std::optional<netchan::lease<int>> held;
  {
    auto l = rx.receive_lease();
    BOOST_REQUIRE(l);
    held.emplace(std::move(*l));
  }
  held.reset(); // the holder lets go without committing
  auto again = keeper.receive_lease();
  BOOST_REQUIRE(again);
  BOOST_CHECK_EQUAL(again->value(), 5);
  BOOST_CHECK(again->redelivered());
  BOOST_CHECK(!again->commit());
}

BOOST_AUTO_TEST_CASE(an_oversized_value_is_refused_at_the_sender) {
  fixture f; // max-message-size 4096
  auto [tx, rx] = channel<std::string>(f.sys, 1);
  auto err = tx.send(std::string(5000, 'x'));
  BOOST_CHECK(netchan::is(err, netchan::errc::message_too_large));
  BOOST_CHECK(netchan::to_string(err).find("max-message-size")
              != std::string::npos);
  BOOST_CHECK_EQUAL(*tx.len(), 0u);
}

BOOST_AUTO_TEST_CASE(an_empty_handle_reports_an_error_instead_of_crashing) {
  netchan::sender<int> tx;
  netchan::receiver<int> rx;
  BOOST_CHECK(!tx);
  BOOST_CHECK(netchan::is(tx.send(1), netchan::errc::invalid_argument));
  BOOST_CHECK(netchan::is(rx.receive().error(),
                          netchan::errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(a_range_for_throws_on_errors_other_than_closed) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, 1);
  BOOST_REQUIRE(!tx.send(1));
  auto no_rx = netchan::receiver<int>{};
  BOOST_CHECK_THROW(
    {
      for (auto x : no_rx)
        static_cast<void>(x);
    },
    netchan::channel_error);
  BOOST_CHECK_EQUAL(*rx.receive(), 1);
}

namespace {

/// Receives until closed, summing; reports the sum (or -1 on another error).
void sum_until_closed(caf::event_based_actor* self, netchan::receiver<int> rx,
                      int sum, std::promise<int>* done) {
  netchan::async_receive(self, rx, [=](caf::expected<int> x) {
    if (x) {
      sum_until_closed(self, rx, sum + *x, done);
      return;
    }
    done->set_value(netchan::is(x.error(), netchan::errc::closed) ? sum : -1);
    self->quit();
  });
}

/// Sends next..last one after another, then closes.
void count_to(caf::event_based_actor* self, netchan::sender<int> tx, int next,
              int last) {
  if (next > last) {
    static_cast<void>(tx.close());
    self->quit();
    return;
  }
  netchan::async_send(self, tx, next, [=](caf::error err) {
    if (err)
      BOOST_ERROR("async_send failed: " << netchan::to_string(err));
    count_to(self, tx, next + 1, last);
  });
}

} // namespace

BOOST_DATA_TEST_CASE(actors_send_and_receive_without_blocking,
                     bdata::make(capacities), cap) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, cap);
  std::promise<int> sum_promise;
  auto sum_future = sum_promise.get_future();
  auto summer = f.sys.spawn([rx = rx, &sum_promise](caf::event_based_actor* self) {
    sum_until_closed(self, rx, 0, &sum_promise);
  });
  auto counter = f.sys.spawn([tx = tx](caf::event_based_actor* self) {
    count_to(self, tx, 1, 100);
  });
  BOOST_REQUIRE(sum_future.wait_for(60s) == std::future_status::ready);
  BOOST_CHECK_EQUAL(sum_future.get(), 5050);
  caf::scoped_actor self{f.sys};
  self->wait_for(summer, counter);
}

BOOST_AUTO_TEST_CASE(an_actor_receive_with_a_deadline_times_out) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, 0);
  std::promise<caf::error> result;
  auto fut = result.get_future();
  auto a = f.sys.spawn([rx = rx, &result](caf::event_based_actor* self) {
    netchan::async_receive_for(self, rx, 20ms,
                               [self, &result](caf::expected<int> x) {
                                 result.set_value(x ? caf::error{} : x.error());
                                 self->quit();
                               });
  });
  BOOST_REQUIRE(fut.wait_for(60s) == std::future_status::ready);
  BOOST_CHECK(netchan::is(fut.get(), netchan::errc::timeout));
  caf::scoped_actor self{f.sys};
  self->wait_for(a);
}

BOOST_AUTO_TEST_CASE(no_error_is_no_errc) {
  BOOST_CHECK(!netchan::is(caf::error{}, netchan::errc::closed));
  BOOST_CHECK_EQUAL(netchan::to_string(caf::error{}), "no error");
}

BOOST_AUTO_TEST_CASE(errors_read_as_sentences) {
  auto err = netchan::make_error(netchan::errc::closed, "channel 'x' is closed");
  BOOST_CHECK_EQUAL(netchan::to_string(err), "closed: channel 'x' is closed");
  fixture f;
  BOOST_CHECK_EQUAL(f.sys.render(err).find("channel 'x' is closed")
                      != std::string::npos,
                    true);
}

BOOST_DATA_TEST_CASE(values_sent_just_before_the_handle_goes_still_arrive,
                     bdata::make(std::vector<size_t>{1, 16, 1024}), cap) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, cap);
  const int n = static_cast<int>(std::min<size_t>(cap, 500));
  {
    auto last_sender = tx; // the only other copy goes below
    tx = netchan::sender<int>{};
    for (int i = 0; i < n; ++i)
      BOOST_REQUIRE(!last_sender.send(i));
  } // the endpoint goes with its last handle, right after the sends
  for (int i = 0; i < n; ++i) {
    auto v = rx.receive_for(30s);
    BOOST_REQUIRE(v);
    BOOST_CHECK_EQUAL(*v, i);
  }
}

BOOST_AUTO_TEST_CASE(a_blocked_send_completes_as_soon_as_one_slot_frees) {
  fixture f;
  auto [tx, rx] = channel<int>(f.sys, 8);
  for (int i = 0; i < 8; ++i)
    BOOST_REQUIRE(!tx.send(i));
  auto blocked = std::async(std::launch::async, [tx = tx] {
    return tx.send_for(8, 30s);
  });
  auto first = rx.receive(); // frees exactly one slot
  BOOST_REQUIRE(first);
  // Go: the blocked send completes now, not when a chunk of slots is free.
  BOOST_REQUIRE(blocked.wait_for(30s) == std::future_status::ready);
  auto err = blocked.get();
  BOOST_CHECK_MESSAGE(!err, netchan::to_string(err));
}
