#define BOOST_TEST_MODULE relay
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "process.hpp"
#include "relay.hpp"

using namespace std::chrono_literals;

namespace {

// -- helpers ------------------------------------------------------------------

/// Every wait for an event: long for a loaded machine, short enough that a
/// broken relay fails the test instead of hanging it.
constexpr auto deadline = 10s;

/// The bounded negative check: this long without a byte counts as "nothing".
constexpr auto quiet = 200ms;

/// Descriptors this process holds: the relay must leave none behind.
size_t open_fds() {
  auto entries = std::filesystem::directory_iterator{"/proc/self/fd"};
  return static_cast<size_t>(std::distance(begin(entries), end(entries)));
}

int left_ms(std::chrono::steady_clock::time_point until) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    until - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<long>(left.count(), 0));
}

bool send_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    auto n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

/// Echoes every connection's bytes back on one thread; closes a connection
/// on its EOF.
class echo_server {
public:
  echo_server() {
    std::tie(listener_, port_) = test::listening_socket();
    // A burst of relayed dials must not overflow listening_socket's backlog.
    ::listen(listener_, SOMAXCONN);
    if (::pipe2(stop_, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe failed");
    thread_ = std::thread{[this] { run(); }};
  }

  ~echo_server() {
    [[maybe_unused]] auto n = ::write(stop_[1], "x", 1);
    thread_.join();
    ::close(listener_);
    ::close(stop_[0]);
    ::close(stop_[1]);
  }

  uint16_t port() const {
    return port_;
  }

  /// Connections accepted so far.
  size_t connections() const {
    return connections_;
  }

private:
  void run() {
    std::vector<int> conns;
    std::vector<char> buf(64 * 1024);
    for (;;) {
      std::vector<pollfd> fds{{stop_[0], POLLIN, 0}, {listener_, POLLIN, 0}};
      for (auto c : conns)
        fds.push_back({c, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), -1) < 0)
        continue;
      if (fds[0].revents != 0)
        break;
      if (fds[1].revents != 0) {
        if (int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
            c >= 0) {
          // A client that stops reading must not hang the server forever.
          timeval limit{10, 0};
          ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
          conns.push_back(c);
          ++connections_;
        }
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0)
          continue;
        auto c = fds[i].fd;
        auto n = ::recv(c, buf.data(), buf.size(), 0);
        if (n <= 0 || !send_all(c, buf.data(), static_cast<size_t>(n))) {
          ::close(c);
          conns.erase(std::find(conns.begin(), conns.end(), c));
        }
      }
    }
    for (auto c : conns)
      ::close(c);
  }

  int listener_ = -1;
  uint16_t port_ = 0;
  int stop_[2] = {-1, -1};
  std::atomic<size_t> connections_{0};
  std::thread thread_;
};

/// How a connection ended, as its client saw it.
enum class ending { eof, reset, timeout };

std::ostream& operator<<(std::ostream& out, ending x) {
  switch (x) {
    case ending::eof:
      return out << "eof";
    case ending::reset:
      return out << "reset";
    default:
      return out << "timeout";
  }
}

/// A blocking TCP client of 127.0.0.1:`port`; every read waits with poll.
class client {
public:
  explicit client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (fd_ < 0
        || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
             != 0)
      throw std::runtime_error("cannot dial 127.0.0.1:"
                               + std::to_string(port));
  }

  ~client() {
    ::close(fd_);
  }

  client(const client&) = delete;
  client& operator=(const client&) = delete;

  bool send(const std::string& data) {
    return send_all(fd_, data.data(), data.size());
  }

  /// Up to `n` bytes, fewer if the connection ends or the time is up.
  std::string receive(size_t n, std::chrono::milliseconds timeout = deadline) {
    auto until = std::chrono::steady_clock::now() + timeout;
    std::string result;
    while (result.size() < n) {
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, left_ms(until)) <= 0)
        break;
      char buf[4096];
      auto got = ::recv(fd_, buf, std::min(sizeof(buf), n - result.size()), 0);
      if (got <= 0)
        break;
      result.append(buf, static_cast<size_t>(got));
    }
    return result;
  }

  /// Sends `data` and reads as many bytes back.
  std::string round_trip(const std::string& data) {
    if (!send(data))
      return {};
    return receive(data.size());
  }

  /// Reads until the connection ends; bytes on the way are counted in
  /// `received`.
  ending wait_end(std::chrono::milliseconds timeout = deadline) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, left_ms(until)) <= 0)
        return ending::timeout;
      char buf[4096];
      auto got = ::recv(fd_, buf, sizeof(buf), 0);
      if (got == 0)
        return ending::eof;
      if (got < 0)
        return errno == ECONNRESET ? ending::reset : ending::timeout;
      received += static_cast<size_t>(got);
    }
  }

  /// Whether not a byte (nor an EOF) arrives for `duration`.
  bool silent_for(std::chrono::milliseconds duration) {
    pollfd pfd{fd_, POLLIN, 0};
    return ::poll(&pfd, 1, static_cast<int>(duration.count())) == 0;
  }

  int fd() const {
    return fd_;
  }

  size_t received = 0;

private:
  int fd_ = -1;
};

} // namespace

// -- forwarding ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(bytes_round_trip_through_the_relay_and_are_counted) {
  echo_server echo;
  test::relay r{"127.0.0.1", echo.port()};
  BOOST_TEST(r.port() != 0);
  BOOST_TEST(r.port() != echo.port());
  client c{r.port()};
  BOOST_TEST(c.round_trip("hello, relay") == "hello, relay");
  BOOST_TEST(c.round_trip("again") == "again");
  BOOST_TEST(r.wait_active(1, deadline));
  // cut() returns after the relay thread ran it: the counters include
  // everything forwarded before.
  r.cut();
  BOOST_TEST(r.accepted() == 1u);
  BOOST_TEST(r.bytes() == 2u * (12 + 5));
  BOOST_TEST(r.cuts() == 1u);
  BOOST_TEST(r.active() == 0u);
  BOOST_TEST(echo.connections() == 1u);
}

BOOST_AUTO_TEST_CASE(four_megabytes_go_both_ways_intact_through_bounded_buffers) {
  echo_server echo;
  test::relay r{"127.0.0.1", echo.port()};
  client c{r.port()};
  // More than the relay buffers and the socket buffers hold together, so the
  // relay must stop reading and resume; a pattern catches reordering.
  std::string out(4 * 1024 * 1024, '\0');
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
  std::string in;
  size_t sent = 0;
  auto until = std::chrono::steady_clock::now() + deadline;
  while (in.size() < out.size()) {
    short events = POLLIN;
    if (sent < out.size())
      events |= POLLOUT;
    pollfd pfd{c.fd(), events, 0};
    if (::poll(&pfd, 1, left_ms(until)) <= 0)
      break;
    if (pfd.revents & POLLOUT) {
      auto n = ::send(c.fd(), out.data() + sent,
                      std::min<size_t>(out.size() - sent, 64 * 1024),
                      MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0)
        sent += static_cast<size_t>(n);
    }
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[64 * 1024];
      auto n = ::recv(c.fd(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN))
        break;
      if (n > 0)
        in.append(buf, static_cast<size_t>(n));
    }
  }
  BOOST_REQUIRE_EQUAL(in.size(), out.size());
  BOOST_TEST((in == out));
  r.cut();
  BOOST_TEST(r.bytes() == 2u * out.size());
}

BOOST_AUTO_TEST_CASE(a_target_that_does_not_read_pushes_back_on_the_client) {
  // Listening but never accepting: the kernel completes the connections and
  // the bytes pile up in its receive buffer until that is full.
  auto [sink, sink_port] = test::listening_socket();
  test::relay r{"127.0.0.1", sink_port};
  client c{r.port()};
  BOOST_REQUIRE(r.wait_active(1, deadline));
  // Socket buffers on both hops hold a few MiB at most; an unbounded relay
  // would swallow all 64 and let the client write on.
  constexpr size_t limit = 64 * 1024 * 1024;
  std::vector<char> chunk(64 * 1024, 'x');
  size_t written = 0;
  while (written < limit) {
    pollfd pfd{c.fd(), POLLOUT, 0};
    if (::poll(&pfd, 1, static_cast<int>(quiet.count())) <= 0)
      break;
    auto n = ::send(c.fd(), chunk.data(), chunk.size(),
                    MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN)
      break;
    written += static_cast<size_t>(std::max<ssize_t>(n, 0));
  }
  BOOST_TEST_MESSAGE("the client wrote " << written << " bytes before blocking");
  BOOST_TEST(written < limit);
  BOOST_TEST(written > 256u * 1024);
  ::close(sink);
}

BOOST_AUTO_TEST_CASE(a_half_close_passes_through_after_the_buffered_bytes) {
  echo_server echo;
  test::relay r{"127.0.0.1", echo.port()};
  client c{r.port()};
  BOOST_REQUIRE(c.send("last words"));
  ::shutdown(c.fd(), SHUT_WR);
  // The echo server answers, sees the EOF, closes; the relay passes both on.
  BOOST_TEST(c.receive(10) == "last words");
  BOOST_TEST(c.wait_end() == ending::eof);
  r.stall(false); // a command: returns after the relay closed the pair
  BOOST_TEST(r.active() == 0u);
  BOOST_TEST(r.cuts() == 0u);
  BOOST_TEST(r.bytes() == 20u);
}

// -- faults -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(cut_resets_every_pair_and_new_connections_still_work) {
  echo_server echo;
  test::relay r{"127.0.0.1", echo.port()};
  client a{r.port()};
  client b{r.port()};
  BOOST_TEST(a.round_trip("a") == "a");
  BOOST_TEST(b.round_trip("b") == "b");
  BOOST_REQUIRE(r.wait_active(2, deadline));
  r.cut();
  BOOST_TEST(r.cuts() == 2u);
  BOOST_TEST(r.active() == 0u);
  BOOST_TEST(a.wait_end() == ending::reset);
  BOOST_TEST(b.wait_end() == ending::reset);
  client c{r.port()};
  BOOST_TEST(c.round_trip("after the cut") == "after the cut");
  BOOST_TEST(r.accepted() == 3u);
  BOOST_TEST(r.wait_active(1, deadline));
}

BOOST_AUTO_TEST_CASE(stall_holds_bytes_until_released) {
  echo_server echo;
  test::relay r{"127.0.0.1", echo.port()};
  client c{r.port()};
  BOOST_REQUIRE(c.round_trip("warm") == "warm");
  r.stall(true);
  BOOST_REQUIRE(c.send("held"));
  BOOST_TEST(c.silent_for(quiet));
  auto before = r.bytes();
  r.stall(false);
  BOOST_TEST(c.receive(4) == "held");
  BOOST_TEST(before == 8u);
  BOOST_TEST(r.active() == 1u);
}

BOOST_AUTO_TEST_CASE(retarget_sends_new_connections_to_the_new_target_only) {
  echo_server first;
  echo_server second;
  test::relay r{"127.0.0.1", first.port()};
  client old{r.port()};
  BOOST_REQUIRE(old.round_trip("old") == "old");
  r.retarget("127.0.0.1", second.port());
  client fresh{r.port()};
  BOOST_TEST(fresh.round_trip("new") == "new");
  BOOST_TEST(second.connections() == 1u);
  BOOST_TEST(old.round_trip("still old") == "still old");
  BOOST_TEST(first.connections() == 1u);
  BOOST_TEST(r.active() == 2u);
}

BOOST_DATA_TEST_CASE(cut_handshakes_resets_after_exactly_the_given_bytes,
                     boost::unit_test::data::make({0, 10}), after_bytes) {
  echo_server echo;
  test::relay r{"127.0.0.1", echo.port()};
  r.cut_handshakes(1, static_cast<size_t>(after_bytes));
  std::string hello(100, 'h');
  {
    client c{r.port()};
    // With 0 the reset may come first and fail the send: it needs no check.
    c.send(hello);
    // With 0 the client may send into the reset and then read an EOF.
    auto end = c.wait_end();
    BOOST_TEST_INFO("ending: " << end);
    BOOST_TEST((end == ending::reset || end == ending::eof));
    BOOST_TEST(c.received == 0u);
    BOOST_TEST(r.cuts() == 1u);
    BOOST_TEST(r.bytes() == static_cast<uint64_t>(after_bytes));
  }
  client next{r.port()};
  BOOST_TEST(next.round_trip(hello) == hello);
  BOOST_TEST(r.cuts() == 1u);
  BOOST_TEST(r.accepted() == 2u);
}

BOOST_AUTO_TEST_CASE(refuse_resets_new_clients_without_dialling_the_target) {
  echo_server echo;
  test::relay r{"127.0.0.1", echo.port()};
  r.refuse(true);
  {
    client c{r.port()};
    BOOST_TEST(c.wait_end() == ending::reset);
  }
  BOOST_TEST(r.accepted() == 1u);
  BOOST_TEST(r.active() == 0u);
  r.refuse(false);
  client c{r.port()};
  BOOST_TEST(c.round_trip("welcome") == "welcome");
  BOOST_TEST(echo.connections() == 1u);
}

BOOST_AUTO_TEST_CASE(a_client_is_reset_when_the_target_refuses) {
  // A port that nobody listens on any more.
  auto [fd, port] = test::listening_socket();
  ::close(fd);
  test::relay r{"127.0.0.1", port};
  client c{r.port()};
  BOOST_TEST(c.wait_end() == ending::reset);
  BOOST_TEST(r.accepted() == 1u);
  BOOST_TEST(r.active() == 0u);
  BOOST_TEST(r.cuts() == 0u);
}

// -- scale and clean-up -------------------------------------------------------

BOOST_AUTO_TEST_CASE(two_hundred_connections_are_relayed_and_cut_together) {
  constexpr size_t n = 200;
  auto fds_before = open_fds();
  {
    echo_server echo;
    test::relay r{"127.0.0.1", echo.port()};
    std::vector<std::unique_ptr<client>> clients;
    for (size_t i = 0; i < n; ++i)
      clients.push_back(std::make_unique<client>(r.port()));
    BOOST_REQUIRE(r.wait_active(n, deadline));
    size_t echoed = 0;
    for (size_t i = 0; i < n; ++i) {
      auto text = "client " + std::to_string(i);
      echoed += clients[i]->round_trip(text) == text ? 1 : 0;
    }
    BOOST_TEST(echoed == n);
    BOOST_TEST(echo.connections() == n);
    r.cut();
    BOOST_TEST(r.cuts() == n);
    BOOST_TEST(r.active() == 0u);
    size_t resets = 0;
    for (auto& c : clients)
      resets += c->wait_end() == ending::reset ? 1 : 0;
    BOOST_TEST(resets == n);
  }
  BOOST_TEST(open_fds() == fds_before);
}

BOOST_AUTO_TEST_CASE(destroying_the_relay_closes_open_connections_and_every_fd) {
  auto fds_before = open_fds();
  {
    echo_server echo;
    std::vector<std::unique_ptr<client>> clients;
    {
      test::relay r{"127.0.0.1", echo.port()};
      for (size_t i = 0; i < 3; ++i)
        clients.push_back(std::make_unique<client>(r.port()));
      BOOST_REQUIRE(r.wait_active(3, deadline));
      // Bytes held in the relay at its end must not keep anything open.
      r.stall(true);
      BOOST_REQUIRE(clients[0]->send("unanswered"));
    }
    for (auto& c : clients) {
      auto end = c->wait_end();
      BOOST_TEST_INFO("ending: " << end);
      BOOST_TEST((end == ending::eof || end == ending::reset));
    }
  }
  BOOST_TEST(open_fds() == fds_before);
}

BOOST_AUTO_TEST_CASE(wait_active_gives_up_at_its_deadline) {
  echo_server echo;
  test::relay r{"127.0.0.1", echo.port()};
  auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!r.wait_active(1, quiet));
  BOOST_TEST((std::chrono::steady_clock::now() - start >= quiet));
  client c{r.port()};
  BOOST_TEST(r.wait_active(1, deadline));
}
