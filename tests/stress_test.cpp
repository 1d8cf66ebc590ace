// Many threads on one channel: 8 senders x 8 receivers x 2,000 values per
// sender, at capacity 0, 1, 16 and 1024 (where credit and fetching ahead
// carry most values). Every value must arrive exactly once and each
// receiver must see every sender's values in that sender's order.
// NETCHAN_STRESS=N multiplies the counts for soak runs by hand.
#define BOOST_TEST_MODULE stress
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <atomic>
#include <future>
#include <map>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>

#include "netchan/netchan.hpp"

namespace bdata = boost::unit_test::data;

namespace {

size_t stress_factor() {
  auto env = std::getenv("NETCHAN_STRESS");
  auto n = env != nullptr ? std::strtoul(env, nullptr, 10) : 1;
  return n > 0 ? n : 1;
}

constexpr uint64_t encode_value(uint64_t sender, uint64_t seq) {
  return (sender << 32) | seq;
}

} // namespace

BOOST_DATA_TEST_CASE(every_value_arrives_once_in_each_senders_order,
                     bdata::make(std::vector<size_t>{0, 1, 16, 1024}), cap) {
  const size_t senders = 8;
  const size_t receivers = 8;
  const size_t per_sender = 2000 * stress_factor();
  netchan::config cfg;
  caf::actor_system sys{cfg};
  std::vector<std::vector<uint64_t>> got(receivers);
  std::vector<caf::error> send_errors(senders);
  std::vector<std::string> receive_errors(receivers);
  {
    auto ch = netchan::make_channel<uint64_t>(sys, cap, "stress");
    BOOST_REQUIRE(ch);
    auto [tx, rx] = *ch;
    std::vector<std::thread> threads;
    for (size_t r = 0; r < receivers; ++r)
      threads.emplace_back([&, r, rx = rx] {
        try {
          for (auto v : rx)
            got[r].push_back(v);
        } catch (const netchan::channel_error& e) {
          receive_errors[r] = e.what();
        }
      });
    std::vector<std::thread> producers;
    for (size_t s = 0; s < senders; ++s)
      producers.emplace_back([&, s, tx = tx] {
        for (uint64_t seq = 1; seq <= per_sender; ++seq)
          if (auto err = tx.send(encode_value(s, seq))) {
            send_errors[s] = err;
            return;
          }
      });
    for (auto& t : producers)
      t.join();
    BOOST_REQUIRE(!tx.close());
    for (auto& t : threads)
      t.join();
    auto st = tx.stats();
    BOOST_REQUIRE(st);
    BOOST_CHECK_EQUAL(st->sent, senders * per_sender);
    BOOST_CHECK_EQUAL(st->received, senders * per_sender);
    BOOST_CHECK_EQUAL(st->requeued, 0u);
    BOOST_CHECK_EQUAL(st->leased, 0u);
  }
  for (size_t s = 0; s < senders; ++s)
    BOOST_CHECK_MESSAGE(!send_errors[s], netchan::to_string(send_errors[s]));
  for (size_t r = 0; r < receivers; ++r)
    BOOST_CHECK_MESSAGE(receive_errors[r].empty(), receive_errors[r]);
  std::map<uint64_t, int> seen;
  for (auto& values : got) {
    std::vector<uint64_t> last(senders, 0);
    for (auto v : values) {
      auto s = v >> 32;
      auto seq = v & 0xffffffffu;
      BOOST_REQUIRE_LT(s, senders);
      BOOST_CHECK_GT(seq, last[s]); // per-sender order at each receiver
      last[s] = seq;
      ++seen[v];
    }
  }
  BOOST_CHECK_EQUAL(seen.size(), senders * per_sender);
  for (auto& [v, n] : seen)
    if (n != 1)
      BOOST_ERROR("value " << v << " arrived " << n << " times");
}

BOOST_AUTO_TEST_CASE(mixing_send_and_try_send_loses_nothing) {
  // A try_send goes straight to the owner while earlier sends on credit may
  // still wait in the endpoint's batch: their order (and so the owner's
  // duplicate check) must hold. 4 threads alternate send and try_send.
  const size_t threads = 4;
  const uint64_t per_thread = 5000 * stress_factor();
  netchan::config cfg;
  caf::actor_system sys{cfg};
  auto ch = netchan::make_channel<uint64_t>(sys, 64);
  BOOST_REQUIRE(ch);
  auto [tx, rx] = *ch;
  std::atomic<uint64_t> sent{0};
  std::vector<std::thread> senders;
  for (size_t t = 0; t < threads; ++t)
    senders.emplace_back([&, t, tx = tx] {
      for (uint64_t i = 1; i <= per_thread; ++i) {
        auto v = encode_value(t, i);
        if (i % 2 == 0) {
          auto ok = tx.try_send(v);
          if (ok && *ok)
            ++sent;
        } else if (!tx.send(v)) {
          ++sent;
        }
      }
    });
  uint64_t received = 0;
  std::thread receiver{[&, rx = rx] {
    for (auto v : rx) {
      static_cast<void>(v);
      ++received;
    }
  }};
  for (auto& t : senders)
    t.join();
  BOOST_REQUIRE(!tx.close());
  receiver.join();
  BOOST_CHECK_EQUAL(received, sent.load());
  auto st = rx.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->duplicates, 0u);
}
