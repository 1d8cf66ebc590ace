// listen/dial with client processes over TLS, with the Go library's
// one-message buffers and with the default capacities: fan-in is complete,
// each listener send reaches exactly one client, a reply reaches the client
// it answers, a client killed mid-stream does not wedge the listener, and
// neither does one that stops reading. An echo at the default capacities
// brings every value back exactly once.
#define BOOST_TEST_MODULE go
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <caf/actor_system.hpp>

#include "certs.hpp"
#include "netchan/netchan.hpp"
#include "process.hpp"

using namespace std::chrono_literals;

namespace {

struct clients {
  std::vector<std::unique_ptr<test::child>> procs;

  /// Collects "got V" lines of client `i` until `n` values or `timeout`.
  std::vector<uint64_t> got(size_t i, size_t n,
                            std::chrono::milliseconds timeout) {
    std::vector<uint64_t> result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (result.size() < n) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        break;
      auto v = procs[i]->wait_for("got ", left);
      if (!v)
        break;
      result.push_back(std::stoull(*v));
    }
    return result;
  }
};

/// The capacities a test runs with: the Go library's one-message buffers
/// (listen and dial with capacity 1), or listen/dial's defaults.
struct shape {
  bool go;

  size_t fan_in() const {
    return go ? 1 : netchan::default_listen_capacity;
  }

  size_t inbox() const {
    return go ? 1 : netchan::default_dial_capacity;
  }

  caf::expected<netchan::listener<uint64_t>>
  listen(caf::actor_system& sys) const {
    return go ? netchan::listen<uint64_t>(sys, "127.0.0.1:0", 1)
              : netchan::listen<uint64_t>(sys, "127.0.0.1:0");
  }

  /// Starts a peer dialling `address`: `args` are its mode and options.
  std::unique_ptr<test::child>
  dial(const std::string& address, std::vector<std::string> args,
       const std::vector<std::string>& certs) const {
    args.insert(args.begin() + 1, {"--to", address});
    if (go)
      args.insert(args.end(), {"--capacity", "1"});
    args.push_back("--");
    args.insert(args.end(), certs.begin(), certs.end());
    return std::make_unique<test::child>(NETCHAN_TEST_PEER, args);
  }

  /// Waits for a peer's "dialed caps F C": the capacities it sees, which
  /// must be this shape's.
  void check_dialed(test::child& peer) const {
    auto caps = peer.wait_for("dialed caps ", 30s);
    BOOST_REQUIRE_MESSAGE(caps, "a client did not dial: " << peer.transcript());
    BOOST_CHECK_EQUAL(*caps, std::to_string(fan_in()) + " "
                               + std::to_string(inbox()));
  }
};

std::ostream& operator<<(std::ostream& out, const shape& x) {
  return out << (x.go ? "the Go library's capacity 1" : "default capacities");
}

const shape shapes[] = {shape{true}, shape{false}};

struct tls_setup {
  ::pki::temp_dir dir;
  test::pki pki{dir.path(), "ca"};
  test::node_certs server = pki.issue("server");
  test::node_certs client = pki.issue("client");
};

/// A listener of `cap`'s shape in this process, over mutual TLS, and the
/// certificates its clients dial with.
struct tls_listener {
  tls_setup tls;
  netchan::config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::optional<netchan::listener<uint64_t>> l;
  std::string address;

  explicit tls_listener(const shape& cap) {
    BOOST_REQUIRE(!cfg.load(tls.server.args()));
    sys = std::make_unique<caf::actor_system>(cfg);
    auto made = cap.listen(*sys);
    if (!made)
      BOOST_FAIL(netchan::to_string(made.error()));
    l.emplace(std::move(*made));
    address = l->node().address();
  }
};

} // namespace

BOOST_DATA_TEST_CASE(listen_and_dial_with_eight_clients,
                     boost::unit_test::data::make(shapes), cap) {
  tls_listener srv{cap};
  auto& tls = srv.tls;
  auto& l = srv.l;
  auto& address = srv.address;
  const size_t n = 8;
  const uint64_t per_client = 500;
  clients cs;
  for (size_t i = 0; i < n; ++i)
    cs.procs.push_back(cap.dial(address,
                                {"dial", "--id", std::to_string(i), "--count",
                                 std::to_string(per_client)},
                                tls.client.args()));
  for (auto& p : cs.procs)
    cap.check_dialed(*p);
  // Fan-in: every value of every client, once, each client under one id.
  std::map<size_t, netchan::client_id> ids;
  std::set<uint64_t> seen;
  for (uint64_t k = 0; k < n * per_client; ++k) {
    auto v = l->receive_from();
    if (!v)
      BOOST_FAIL("fan-in stopped after " << k << ": "
                                         << netchan::to_string(v.error()));
    auto client = static_cast<size_t>(v->first >> 32);
    BOOST_REQUIRE_LT(client, n);
    BOOST_CHECK(seen.insert(v->first).second);
    auto [it, fresh] = ids.emplace(client, v->second);
    BOOST_CHECK_EQUAL(it->second, v->second); // the same id every time
    static_cast<void>(fresh);
  }
  BOOST_CHECK_EQUAL(seen.size(), n * per_client);
  BOOST_REQUIRE_EQUAL(ids.size(), n);
  BOOST_CHECK_EQUAL(l->clients(), n);
  // Replies reach the client they answer.
  for (auto& [i, id] : ids)
    BOOST_REQUIRE(!l->reply(id, (uint64_t{i} << 32) | 0xFFFFu));
  for (size_t i = 0; i < n; ++i) {
    auto got = cs.got(i, 1, 30s);
    BOOST_REQUIRE_EQUAL(got.size(), 1u);
    BOOST_CHECK_EQUAL(got[0], (uint64_t{i} << 32) | 0xFFFFu);
  }
  // Work distribution: each value to exactly one client; one client is
  // killed half-way and the listener goes on. (At the default capacities
  // the first half may all sit in buffers by then; the second half is sent
  // after the kill either way.)
  const uint64_t total = 400;
  const uint64_t tag = uint64_t{1} << 48;
  // A send to the dying client may end in doubt (it may have taken the
  // value): never re-sent, so never duplicated; counted here.
  uint64_t in_doubt = 0;
  std::promise<void> halfway;
  std::promise<void> killed;
  auto sender = std::async(std::launch::async, [&] {
    for (uint64_t k = 1; k <= total; ++k) {
      if (k == total / 2 + 1) {
        halfway.set_value();
        killed.get_future().wait();
      }
      if (auto err = l->send(tag | k)) {
        if (!netchan::is(err, netchan::errc::outcome_unknown))
          return err;
        ++in_doubt;
      }
    }
    return caf::error{};
  });
  auto half_sent = halfway.get_future().wait_for(60s)
                   == std::future_status::ready;
  cs.procs[0]->kill();
  killed.set_value();
  if (!half_sent || sender.wait_for(60s) != std::future_status::ready) {
    l->node().shutdown(); // ends a blocked send, so the test can end
    BOOST_FAIL("the listener's send is stuck, or failed: "
               << netchan::to_string(sender.get()));
  }
  auto err = sender.get();
  BOOST_REQUIRE_MESSAGE(!err, netchan::to_string(err));
  std::map<uint64_t, int> delivered;
  // Client 0 may have printed more before it died.
  for (auto line = cs.procs[0]->wait_for("got ", 100ms); line;
       line = cs.procs[0]->wait_for("got ", 100ms))
    ++delivered[std::stoull(*line)];
  // The listener drops the dead client when CAF reports its inbox down:
  // an event the listener does not expose, so poll, bounded.
  auto dropped_by = std::chrono::steady_clock::now() + 30s;
  while (l->clients() != n - 1 && std::chrono::steady_clock::now() < dropped_by)
    std::this_thread::sleep_for(1ms);
  BOOST_CHECK_EQUAL(l->clients(), n - 1);
  // The live clients close their inboxes, print what they still hold and
  // exit: their output ends once they printed everything they got.
  for (size_t i = 1; i < n; ++i) {
    cs.procs[i]->close_stdin();
    while (auto line = cs.procs[i]->wait_for("got ", 30s))
      ++delivered[std::stoull(*line)];
  }
  uint64_t missing = 0;
  for (uint64_t k = 1; k <= total; ++k) {
    auto c = delivered.count(tag | k) ? delivered[tag | k] : 0;
    BOOST_CHECK_LE(c, 1); // never twice
    missing += c == 0 ? 1 : 0;
  }
  // Lost with the dead client: values accepted into its own inbox buffer
  // (at most its capacity), and values in doubt that it never printed.
  BOOST_CHECK_LE(missing, cap.inbox() + in_doubt);
  BOOST_CHECK_LE(in_doubt, 1u);
  for (auto& p : cs.procs)
    p->close_stdin();
}

BOOST_DATA_TEST_CASE(a_client_that_stops_reading_does_not_wedge_the_listener,
                     boost::unit_test::data::make(shapes), cap) {
  tls_listener srv{cap};
  auto& tls = srv.tls;
  auto& l = srv.l;
  auto& address = srv.address;
  clients cs; // 0 never reads its inbox, 1 reads
  cs.procs.push_back(cap.dial(address, {"dial", "--id", "0", "--read", "0"},
                              tls.client.args()));
  cs.procs.push_back(
    cap.dial(address, {"dial", "--id", "1"}, tls.client.args()));
  for (auto& p : cs.procs)
    cap.check_dialed(*p);
  // Both have said hello before they print "dialed caps": both are clients.
  BOOST_REQUIRE_EQUAL(l->clients(), 2u);
  // More than the silent client's inbox holds: the rest must go to the
  // reader, however often the silent one's turn comes.
  const uint64_t total = cap.inbox() + 100;
  auto sender = std::async(std::launch::async, [&] {
    for (uint64_t k = 1; k <= total; ++k)
      if (auto err = l->send(k))
        return err;
    return caf::error{};
  });
  if (sender.wait_for(60s) != std::future_status::ready) {
    cs.procs[0]->kill(); // ends the blocked send, so the test can end
    sender.wait();
    BOOST_FAIL("the listener's send is stuck on the client that does not "
               "read");
  }
  auto err = sender.get();
  BOOST_REQUIRE_MESSAGE(!err, netchan::to_string(err));
  // The silent client holds at most its inbox's capacity; the reader
  // prints the rest, each value once.
  auto got = cs.got(1, total - cap.inbox(), 30s);
  BOOST_CHECK_GE(got.size(), total - cap.inbox());
  std::set<uint64_t> once(got.begin(), got.end());
  BOOST_CHECK_EQUAL(once.size(), got.size());
  for (auto v : got)
    BOOST_CHECK(v >= 1 && v <= total);
  BOOST_CHECK_EQUAL(l->clients(), 2u);
  for (auto& p : cs.procs)
    p->close_stdin();
}

BOOST_AUTO_TEST_CASE(echo_at_the_default_capacities_returns_every_value_once) {
  const shape cap{false};
  tls_listener srv{cap};
  auto& tls = srv.tls;
  auto& l = srv.l;
  auto& address = srv.address;
  const size_t n = 3;
  clients cs;
  for (size_t i = 0; i < n; ++i)
    cs.procs.push_back(cap.dial(address, {"echo"}, tls.client.args()));
  for (auto& p : cs.procs)
    cap.check_dialed(*p);
  BOOST_REQUIRE_EQUAL(l->clients(), n);
  // Many more values than all buffers together hold, from two threads.
  const uint64_t total = 20000;
  auto sender = std::async(std::launch::async, [&] {
    std::atomic<uint64_t> next{1};
    auto send_some = [&] {
      for (auto k = next++; k <= total; k = next++)
        if (auto err = l->send(k))
          return err;
      return caf::error{};
    };
    auto other = std::async(std::launch::async, send_some);
    auto err = send_some();
    auto err2 = other.get();
    return err ? err : err2;
  });
  auto receiver = std::async(std::launch::async, [&] {
    std::vector<uint64_t> seen(total + 1, 0);
    for (uint64_t k = 0; k < total; ++k) {
      auto v = l->receive();
      if (!v)
        break;
      if (*v >= 1 && *v <= total)
        ++seen[*v];
    }
    return seen;
  });
  if (receiver.wait_for(120s) != std::future_status::ready) {
    l->node().shutdown(); // ends the blocked receive, so the test can end
    receiver.wait();
    sender.wait();
    BOOST_FAIL("not every value came back");
  }
  auto err = sender.get();
  BOOST_REQUIRE_MESSAGE(!err, netchan::to_string(err));
  auto seen = receiver.get();
  uint64_t once = 0;
  for (uint64_t k = 1; k <= total; ++k) {
    BOOST_CHECK_MESSAGE(seen[k] == 1, "value " << k << " came back "
                                               << seen[k] << " times");
    once += seen[k] == 1 ? 1 : 0;
  }
  BOOST_CHECK_EQUAL(once, total);
  // The clients' own books: every value echoed, none returned.
  uint64_t echoed = 0;
  for (auto& p : cs.procs) {
    p->close_stdin();
    auto line = p->wait_for("echoed ", 30s);
    BOOST_REQUIRE_MESSAGE(line, "a client did not report: " << p->transcript());
    uint64_t e = 0;
    uint64_t r = 0;
    std::string word;
    std::istringstream in{*line};
    BOOST_REQUIRE_MESSAGE(in >> e >> word >> r, "bad report: " << *line);
    BOOST_CHECK_EQUAL(r, 0u);
    echoed += e;
  }
  BOOST_CHECK_EQUAL(echoed, total);
}
