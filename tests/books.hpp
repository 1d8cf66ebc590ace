#pragma once

// Counting what arrived: the books of a receiving side, a receiver process
// (peer mode "drain") that writes into them, and the checks that every value
// is accounted for (DESIGN.md, "Failure contract").

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "nodes.hpp"

namespace test {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// What the receiving side saw: every copy of every value, flagged or not.
class books {
public:
  void got(uint64_t value, bool redelivered) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      copies_[value].push_back(redelivered);
      order_.push_back(value);
    }
    cv_.notify_all();
  }

  /// Waits until `n` distinct values arrived; false after `timeout`.
  bool wait_distinct(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, timeout, [&] { return copies_.size() >= n; });
  }

  /// Waits until `pred()` holds, checked at every value; false after
  /// `timeout`.
  template <class Pred>
  bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, timeout, pred);
  }

  void poke() {
    cv_.notify_all();
  }

  std::map<uint64_t, std::vector<bool>> copies() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return copies_;
  }

  /// Every copy, in the order of arrival.
  std::vector<uint64_t> order() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return order_;
  }

  size_t distinct() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return copies_.size();
  }

private:
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::map<uint64_t, std::vector<bool>> copies_;
  std::vector<uint64_t> order_;
};

/// A receiver process (peer mode "drain") whose "got" lines go into the
/// books; `kill_after` kills it once it printed that many.
class drainer {
public:
  drainer(const std::string& from, bool leases,
          const std::vector<std::string>& config, books& b,
          std::vector<std::string> env = {}, size_t kill_after = 0)
    : books_(b), kill_after_(kill_after) {
    proc_ = test::start_peer("drain",
                             {"--from", from, "--lease", leases ? "1" : "0"},
                             config, env);
    if (!proc_->wait_for("draining", 30s))
      BOOST_FAIL("receiver did not start: " << proc_->transcript());
    reader_ = std::thread{[this] { read(); }};
  }

  ~drainer() {
    stop_ = true;
    reader_.join();
    proc_->kill();
  }

  /// Waits for its last line ("end ..."); empty if it died without one.
  std::string end(std::chrono::milliseconds timeout) {
    auto f = end_.get_future();
    if (f.wait_for(timeout) != std::future_status::ready)
      return "(no end line within the deadline)";
    return f.get();
  }

  size_t printed() const {
    return printed_;
  }

  test::child& proc() {
    return *proc_;
  }

private:
  void read() {
    std::string last;
    while (!stop_ && !proc_->output_closed()) {
      auto line = proc_->read_line(100ms);
      if (!line)
        continue;
      if (line->compare(0, 4, "got ") == 0) {
        auto redelivered = line->find("redelivered") != std::string::npos;
        books_.got(std::stoull(line->substr(4)), redelivered);
        if (++printed_ == kill_after_)
          proc_->kill();
      } else if (line->compare(0, 4, "end ") == 0) {
        last = line->substr(4);
        break;
      }
    }
    end_.set_value(last);
    books_.poke();
  }

  books& books_;
  size_t kill_after_;
  std::unique_ptr<test::child> proc_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> printed_{0};
  std::promise<std::string> end_;
  std::thread reader_;
};

/// Every value 1..produced arrived at least once; a value that arrived
/// twice was flagged redelivered at least once (duplicates <= in-doubt).
inline void check_every_value_once_or_flagged(const books& b, uint64_t produced) {
  auto copies = b.copies();
  size_t missing = 0;
  size_t duplicates = 0;
  size_t flagged = 0;
  size_t unflagged_twice = 0;
  for (uint64_t v = 1; v <= produced; ++v) {
    auto i = copies.find(v);
    if (i == copies.end()) {
      ++missing;
      continue;
    }
    auto& c = i->second;
    auto f = static_cast<size_t>(std::count(c.begin(), c.end(), true));
    flagged += f;
    duplicates += c.size() - 1;
    if (c.size() > 1 && f == 0)
      ++unflagged_twice;
  }
  BOOST_TEST_MESSAGE("produced=" << produced << " distinct=" << copies.size()
                                 << " duplicates=" << duplicates
                                 << " redelivered=" << flagged);
  BOOST_CHECK_EQUAL(missing, 0u);
  BOOST_CHECK_EQUAL(copies.size(), produced); // nothing that was not sent
  BOOST_CHECK_EQUAL(unflagged_twice, 0u);
  BOOST_CHECK_LE(duplicates, flagged);
}

/// Once nothing is in flight, the owner holds no lease and no credit.
inline void check_owner_settled(const netchan::receiver<uint64_t>& rx) {
  auto deadline = clock_type::now() + 30s;
  auto st = rx.stats();
  while (st && (st->leased != 0 || st->reserved != 0)
         && clock_type::now() < deadline)
    st = rx.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->leased, 0u);
  BOOST_CHECK_EQUAL(st->reserved, 0u);
  BOOST_CHECK_EQUAL(st->buffered, 0u);
}

} // namespace test
