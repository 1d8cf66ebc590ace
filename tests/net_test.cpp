// Nodes over TLS, between real processes on 127.0.0.1 with port 0: the test
// process is one node, tests/peer.cpp the other. Certificates come from a
// throw-away PKI made for each test.
#define BOOST_TEST_MODULE net
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <csignal>
#include <atomic>
#include <future>
#include <thread>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/actor_system.hpp>

#include "nodes.hpp"

using namespace std::chrono_literals;

namespace {

using test::local_node;
using test::open_or_fail;
using test::peer;

struct fixture : test::cluster {};

/// Writes `bytes` to 127.0.0.1:port from a plain TCP socket and closes it.
void send_raw(uint16_t port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE_EQUAL(::connect(fd, reinterpret_cast<sockaddr*>(&addr),
                                sizeof(addr)),
                      0);
  BOOST_REQUIRE_EQUAL(::write(fd, bytes.data(), bytes.size()),
                      static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

/// A good client still gets through: the node kept serving.
void require_node_serves(const fixture& f, const peer& p) {
  local_node good{f.client.args()};
  auto [tx, rx] = open_or_fail<int32_t>(good.get(), p.where("ping"));
  BOOST_REQUIRE(!tx.send(7));
  auto got = rx.receive_for(30s);
  BOOST_REQUIRE(got);
  BOOST_CHECK_EQUAL(*got, 7);
}

void require_error(const caf::error& err, netchan::errc code,
                   const std::string& needle) {
  BOOST_REQUIRE_MESSAGE(err, "expected an error naming " << needle);
  auto text = netchan::to_string(err);
  BOOST_TEST_MESSAGE(text);
  BOOST_CHECK_MESSAGE(netchan::is(err, code), text);
  BOOST_CHECK_MESSAGE(text.find(needle) != std::string::npos,
                      "'" << text << "' should name '" << needle << "'");
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(net, fixture)

// -- values between processes ---------------------------------------------------

BOOST_AUTO_TEST_CASE(a_user_struct_crosses_to_another_process_and_back) {
  peer p{{"--echo", "in:out"}, listen_args()};
  local_node me{client.args()};
  auto [in_tx, in_rx] = open_or_fail<test::job>(me.get(), p.where("in"));
  auto [out_tx, out_rx] = open_or_fail<test::job>(me.get(), p.where("out"));
  test::job sent{"checksum", {0, 1, 2, 254, 255}, -42};
  BOOST_REQUIRE(!in_tx.send(sent));
  auto back = out_rx.receive_for(30s);
  if (!back)
    BOOST_FAIL("no echo: " << netchan::to_string(back.error()));
  BOOST_CHECK(*back == sent);
}

BOOST_AUTO_TEST_CASE(a_remote_unbuffered_send_waits_for_a_receiver) {
  peer p{{"--channel", "rv:int:0"}, listen_args()};
  local_node me{client.args()};
  auto [tx, rx] = open_or_fail<int32_t>(me.get(), p.where("rv"));
  BOOST_CHECK_EQUAL(tx.cap(), 0u);
  auto err = tx.send_for(1, 200ms);
  BOOST_CHECK(netchan::is(err, netchan::errc::timeout));
  BOOST_CHECK_EQUAL(*tx.len(), 0u);
  auto receiver = std::async(std::launch::async, [rx = rx] {
    return rx.receive_for(30s);
  });
  err = tx.send_for(2, 30s);
  BOOST_CHECK_MESSAGE(!err, netchan::to_string(err));
  auto got = receiver.get();
  BOOST_REQUIRE(got);
  BOOST_CHECK_EQUAL(*got, 2); // the timed-out 1 was withdrawn, not delivered
}

BOOST_AUTO_TEST_CASE(a_handle_passed_a_to_b_to_c_works_on_c_after_b_exited) {
  local_node a{listen_args()};
  using handle = netchan::sender<int32_t>;
  // An anonymous channel of A: its handle is published when it leaves.
  auto target = netchan::make_channel<int32_t>(*a.sys, 4);
  BOOST_REQUIRE(target);
  auto to_b = a.get().create<handle>("to_b", 1);
  BOOST_REQUIRE(to_b);
  auto a_addr = "127.0.0.1:" + std::to_string(a.get().port()) + "/";
  auto peer_cfg = client.args();
  peer_cfg.push_back("--netchan.listen=127.0.0.1:0");
  auto with_cfg = [&](std::vector<std::string> own) {
    own.push_back("--");
    own.insert(own.end(), peer_cfg.begin(), peer_cfg.end());
    return own;
  };
  test::child b{NETCHAN_TEST_PEER, with_cfg({"relay", "--from",
                                             a_addr + "to_b"})};
  auto b_port = b.wait_for("ready port=", 30s);
  BOOST_REQUIRE_MESSAGE(b_port, b.transcript());
  BOOST_REQUIRE(!to_b->first.send(target->first));
  BOOST_REQUIRE_MESSAGE(b.wait_for("relayed", 30s), b.transcript());
  test::child c{NETCHAN_TEST_PEER,
                with_cfg({"use", "--from",
                          "127.0.0.1:" + *b_port + "/mailbox"})};
  BOOST_REQUIRE_MESSAGE(c.wait_for("got handle", 30s), c.transcript());
  b.close_stdin();
  BOOST_REQUIRE_EQUAL(b.wait(30s), 0); // B is gone before C uses the handle
  c.write_line("go");
  BOOST_REQUIRE_MESSAGE(c.wait_for("used", 30s), c.transcript());
  auto got = target->second.receive_for(30s);
  BOOST_REQUIRE(got);
  BOOST_CHECK_EQUAL(*got, 42);
  BOOST_CHECK_EQUAL(c.wait(30s), 0);
  // Named channels are listed; the published anonymous one is not.
  BOOST_CHECK(a.get().channels() == std::vector<std::string>{"to_b"});
}

BOOST_AUTO_TEST_CASE(values_fetched_ahead_by_an_idle_receiver_reach_another) {
  local_node a{listen_args()};
  auto ch = a.get().create<int32_t>("shared", 4);
  BOOST_REQUIRE(ch);
  auto [tx, first] = *ch;
  // A second receiver family on the same channel (its own endpoint).
  auto [unused, second] = open_or_fail<int32_t>(
    a.get(), "127.0.0.1:" + std::to_string(a.get().port()) + "/shared");
  for (int i = 1; i <= 4; ++i)
    BOOST_REQUIRE(!tx.send(i));
  for (int i = 1; i <= 3; ++i) // fetches ahead, takes three, then stops
    BOOST_REQUIRE_EQUAL(*first.receive_for(30s), i);
  auto fourth = second.receive_for(30s); // not stranded with `first`
  BOOST_REQUIRE(fourth);
  BOOST_CHECK_EQUAL(*fourth, 4);
  BOOST_REQUIRE(!tx.close());
  auto end = second.receive_for(30s);
  BOOST_REQUIRE(!end);
  BOOST_CHECK(netchan::is(end.error(), netchan::errc::closed));
  auto st = tx.stats();
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->requeued, 0u); // returned unread, not redelivered
}

// -- errors that say what to fix ------------------------------------------------

BOOST_AUTO_TEST_CASE(an_unknown_channel_name_lists_the_nodes_channels) {
  peer p{{"--channel", "jobs:int:1", "--channel", "results:int:1"},
         listen_args()};
  local_node me{client.args()};
  auto ch = me.get().open<int32_t>(p.where("jbos"));
  BOOST_REQUIRE(!ch);
  require_error(ch.error(), netchan::errc::unknown_channel, "jobs, results");
}

BOOST_AUTO_TEST_CASE(dial_returns_the_channel_names_exactly_as_hosted) {
  // Names a display string would garble: one with ", " inside, one that
  // reads as "no channels".
  peer p{{"--channel", "a, b:int:1", "--channel", "(none):int:1"},
         listen_args()};
  local_node me{client.args()};
  auto names = me.get().dial("127.0.0.1:" + std::to_string(p.port));
  if (!names)
    BOOST_FAIL("dial: " << netchan::to_string(names.error()));
  for (auto& name : *names)
    BOOST_TEST_MESSAGE("listed: '" << name << "'");
  BOOST_CHECK((*names == std::vector<std::string>{"(none)", "a, b"}));
}

BOOST_AUTO_TEST_CASE(opening_with_the_wrong_type_names_both_types) {
  peer p{{"--channel", "jobs:int:1"}, listen_args()};
  local_node me{client.args()};
  auto ch = me.get().open<std::string>(p.where("jobs"));
  BOOST_REQUIRE(!ch);
  require_error(ch.error(), netchan::errc::type_mismatch, "@i32");
  BOOST_CHECK(netchan::to_string(ch.error()).find("@str") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(an_oversized_value_is_refused_by_the_owner) {
  auto args = listen_args();
  args.push_back("--netchan.max-message-size=64");
  peer p{{"--channel", "small:str:1"}, args};
  local_node me{client.args()}; // our own limit is the default 16 MiB
  auto [tx, rx] = open_or_fail<std::string>(me.get(), p.where("small"));
  require_error(tx.send(std::string(1000, 'x')),
                netchan::errc::message_too_large, "max-message-size");
  BOOST_CHECK(!tx.send("fits"));
}

BOOST_AUTO_TEST_CASE(a_refused_connection_says_so) {
  uint16_t port;
  { // a port that nobody listens on any more
    peer p{{}, listen_args()};
    port = p.port;
  }
  local_node me{client.args()};
  auto ch = me.get().open<int32_t>("127.0.0.1:" + std::to_string(port) + "/x");
  BOOST_REQUIRE(!ch);
  require_error(ch.error(), netchan::errc::connect_failed, "refused");
}

// -- an owner that dies and comes back ------------------------------------------

BOOST_AUTO_TEST_CASE(a_killed_owner_fails_old_handles_and_open_works_again) {
  auto p = std::make_unique<peer>(
    std::vector<std::string>{"--channel", "q:int:1", "--channel",
                             "wide:int:1024"},
    listen_args());
  auto port = p->port;
  local_node me{client.args()};
  auto [tx, rx] = open_or_fail<int32_t>(me.get(), p->where("q"));
  auto [wide_tx, wide_rx] = open_or_fail<int32_t>(me.get(), p->where("wide"));
  BOOST_REQUIRE(!tx.send(1));
  BOOST_REQUIRE_EQUAL(*rx.receive(), 1);
  BOOST_REQUIRE(!wide_tx.send(1)); // holds credit for ~1000 more now
  auto blocked = std::async(std::launch::async, [rx = rx] {
    return rx.receive();
  });
  p->proc->kill();
  BOOST_REQUIRE(blocked.wait_for(60s) == std::future_status::ready);
  auto got = blocked.get();
  BOOST_REQUIRE(!got);
  BOOST_CHECK(netchan::is(got.error(), netchan::errc::peer_down));
  // Credit from a dead owner is worthless: once a sender's endpoint knows
  // of the death (the event we wait for: a query answered peer_down), a
  // send must fail, not report success until the credit runs out. Before
  // that, a send into credit granted earlier may still complete: such a
  // value is lost with the owner's buffer, which the contract allows (≤ N).
  auto learns_of_death = [](auto& handle) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    auto len = handle.len();
    while ((len || !netchan::is(len.error(), netchan::errc::peer_down))
           && std::chrono::steady_clock::now() < deadline)
      len = handle.len();
    return !len && netchan::is(len.error(), netchan::errc::peer_down);
  };
  BOOST_REQUIRE(learns_of_death(tx));
  BOOST_CHECK(netchan::is(tx.send(2), netchan::errc::peer_down));
  BOOST_REQUIRE(learns_of_death(wide_tx));
  BOOST_CHECK(netchan::is(wide_tx.send(2), netchan::errc::peer_down));
  p.reset();
  peer again{{"--channel", "q:int:1"}, listen_args(port)};
  BOOST_REQUIRE_EQUAL(again.port, port);
  auto [tx2, rx2] = open_or_fail<int32_t>(me.get(), again.where("q"));
  BOOST_REQUIRE(!tx2.send(3));
  BOOST_CHECK_EQUAL(*rx2.receive(), 3);
  BOOST_CHECK(netchan::is(tx.send(4), netchan::errc::peer_down)); // stays failed
}

// -- security: mutual TLS with the cluster CA -----------------------------------

BOOST_AUTO_TEST_CASE(a_client_with_a_certificate_from_another_ca_is_refused) {
  peer p{{"--channel", "ping:int:1"}, listen_args()};
  test::pki other{dir.path(), "other-ca"};
  auto stranger = other.issue("stranger");
  {
    local_node me{stranger.args()};
    auto ch = me.get().open<int32_t>(p.where("ping"));
    BOOST_REQUIRE(!ch);
    require_error(ch.error(), netchan::errc::tls_failed, "certificate");
  }
  require_node_serves(*this, p);
}

BOOST_AUTO_TEST_CASE(a_server_certificate_from_an_untrusted_ca_is_named) {
  test::pki other{dir.path(), "rogue-ca"};
  auto rogue = other.issue("rogue-server");
  auto args = rogue.args();
  args.push_back("--netchan.listen=127.0.0.1:0");
  peer p{{"--channel", "ping:int:1"}, args};
  local_node me{client.args()};
  auto ch = me.get().open<int32_t>(p.where("ping"));
  BOOST_REQUIRE(!ch);
  require_error(ch.error(), netchan::errc::tls_failed, "not signed by our CA");
}

BOOST_AUTO_TEST_CASE(a_plaintext_server_is_named_as_such) {
  // A listening TCP socket that answers TLS with plain bytes.
  auto [listener, port] = test::listening_socket();
  auto fd = listener;
  std::atomic<bool> done{false};
  std::thread server{[fd, &done] {
    while (!done) {
      int conn = ::accept(fd, nullptr, nullptr);
      if (conn < 0)
        return;
      static_cast<void>(::write(conn, "220 hello\r\n", 11));
      ::close(conn);
    }
  }};
  {
    local_node me{client.args()};
    auto ch = me.get().open<int32_t>("127.0.0.1:" + std::to_string(port)
                                     + "/x");
    BOOST_REQUIRE(!ch);
    require_error(ch.error(), netchan::errc::tls_failed, "not a TLS");
  }
  done = true;
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  server.join();
}

BOOST_AUTO_TEST_CASE(an_unknown_host_is_named) {
  local_node me{client.args()};
  auto ch = me.get().open<int32_t>("no-such-host.invalid:7000/x");
  BOOST_REQUIRE(!ch);
  require_error(ch.error(), netchan::errc::connect_failed, "unknown host");
}

BOOST_AUTO_TEST_CASE(an_anonymous_client_is_refused) {
  peer p{{"--channel", "ping:int:1"}, listen_args()};
  {
    local_node me{{"--netchan.insecure"}};
    auto ch = me.get().open<int32_t>(p.where("ping"));
    BOOST_REQUIRE(!ch);
    require_error(ch.error(), netchan::errc::tls_failed, "certificate");
  }
  require_node_serves(*this, p);
}

BOOST_AUTO_TEST_CASE(garbage_bytes_on_the_port_do_not_stop_the_node) {
  peer p{{"--channel", "ping:int:1"}, listen_args()};
  send_raw(p.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  send_raw(p.port, std::string(4096, '\xff'));
  send_raw(p.port, "");
  require_node_serves(*this, p);
}

BOOST_AUTO_TEST_CASE(a_node_without_certificates_refuses_to_start) {
  local_node me{{"--netchan.listen=127.0.0.1:0"}};
  BOOST_REQUIRE(!me.node);
  require_error(me.start_error, netchan::errc::invalid_config,
                "make-dev-certs");
}

BOOST_AUTO_TEST_CASE(an_insecure_node_stays_on_loopback) {
  local_node me{{"--netchan.insecure", "--netchan.listen=0.0.0.0:0"}};
  BOOST_REQUIRE(!me.node);
  require_error(me.start_error, netchan::errc::invalid_config, "loopback");
}

BOOST_AUTO_TEST_CASE(an_expired_certificate_is_refused_at_start) {
  auto old = pki.issue("old", test::cert_kind::expired);
  local_node me{old.args()};
  BOOST_REQUIRE(!me.node);
  require_error(me.start_error, netchan::errc::invalid_config, "expired");
}

BOOST_AUTO_TEST_CASE(a_wrong_key_passphrase_is_refused_at_start) {
  auto locked = pki.issue("locked", test::cert_kind::encrypted);
  locked.passphrase = "wrong";
  auto args = locked.args();
  local_node me{args};
  BOOST_REQUIRE(!me.node);
  require_error(me.start_error, netchan::errc::invalid_config, "passphrase");
}

BOOST_AUTO_TEST_SUITE_END()
