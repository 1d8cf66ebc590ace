// Bad input never stops a node from serving others. The node under attack is
// a netchan-test-peer process: its memory is read from /proc, and its death
// would show. The attacks come from plain sockets of this process: random
// bytes, TLS handshakes left half-finished, clients trickling a ClientHello a
// byte at a time. A good client, a netchan node in this process with proper
// certificates, must be served meanwhile, within a deadline, and the attacked
// node's memory must stay within 64 MiB of where it started.
//
// What CAF 0.17.6 does with such connections (see README, "Limits", and
// libnetchan/src/transport/openssl_shim.cpp): it never times one out, and
// each keeps its I/O thread busy polling for writes until the handshake
// ends. netchan cuts unfinished handshakes after netchan.connect-timeout;
// the first test raises that limit so that the attack lasts as long as the
// check does.
#define BOOST_TEST_MODULE hostile
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <random>
#include <sstream>
#include <sys/resource.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <caf/actor_system.hpp>

#include "nodes.hpp"

using namespace std::chrono_literals;

namespace {

using steady = std::chrono::steady_clock;

// -- nodes -----------------------------------------------------------------------

/// Not a test::job, but registered under its name: what a process built
/// from another version of the type would send.
struct fake_job {
  std::string text;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fake_job& x) {
  return f(caf::meta::type_name("test::job"), x.text);
}

struct fake_config : netchan::config {
  fake_config() {
    add_message_type<fake_job>("test::job");
  }
};

template <class Config = test::node_config>
using local_node = test::basic_local_node<Config>;

/// The node under attack: `netchan-test-peer serve` hosting channels.
struct attacked_node : test::peer {
  attacked_node(const std::vector<std::string>& channels,
                const std::vector<std::string>& config)
    : test::peer(channel_args(channels), config) {
  }

  static std::vector<std::string>
  channel_args(const std::vector<std::string>& channels) {
    std::vector<std::string> args;
    for (auto& c : channels) {
      args.push_back("--channel");
      args.push_back(c);
    }
    return args;
  }
};

struct fixture {
  ::pki::temp_dir dir;
  test::pki pki{dir.path(), "cluster-ca"};
  test::node_certs server = pki.issue("server");
  test::node_certs client = pki.issue("client");

  std::vector<std::string>
  server_args(const std::string& connect_timeout = "") const {
    auto args = server.args();
    args.push_back("--netchan.listen=127.0.0.1:0");
    if (!connect_timeout.empty())
      args.push_back("--netchan.connect-timeout=" + connect_timeout);
    return args;
  }

  /// A new good client gets through: the node kept serving.
  void require_node_serves(const attacked_node& n) const {
    local_node<> good{client.args()};
    auto [tx, rx] = good.open<int32_t>(n.where("ping"));
    BOOST_REQUIRE(!tx.send(7));
    auto got = rx.receive_for(30s);
    if (!got)
      BOOST_FAIL("receive: " << netchan::to_string(got.error()));
    BOOST_CHECK_EQUAL(*got, 7);
  }
};

// -- what /proc says about the attacked process ------------------------------------

using test::memory_kib;

/// Resets VmHWM to the current RSS (Linux >= 4.0); false if not allowed.
bool reset_peak_memory(pid_t pid) {
  std::ofstream out{"/proc/" + std::to_string(pid) + "/clear_refs"};
  out << "5";
  out.flush();
  return out.good();
}

/// CPU time (user + system) the process has used, in seconds.
double cpu_seconds(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string stat;
  std::getline(in, stat);
  std::istringstream rest{stat.substr(stat.rfind(')') + 2)};
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14)
      utime = std::stoull(field);
    if (i == 15)
      stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime)
         / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// How many file descriptors the process has open.
size_t open_fds(pid_t pid) {
  size_t n = 0;
  if (auto d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (auto e = ::readdir(d))
      if (e->d_name[0] != '.')
        ++n;
    ::closedir(d);
  }
  return n;
}

/// Waits until `pred()` holds, checking every 10 ms, for at most `limit`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
  auto deadline = steady::now() + limit;
  while (!pred()) {
    if (steady::now() >= deadline)
      return false;
    std::this_thread::sleep_for(10ms); // polling /proc, bounded above
  }
  return true;
}

// -- raw connections ----------------------------------------------------------------

/// A TCP connection to 127.0.0.1, closed when this goes.
class connection {
public:
  explicit connection(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    BOOST_REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE_EQUAL(::connect(fd_, reinterpret_cast<sockaddr*>(&addr),
                                  sizeof(addr)),
                        0);
  }

  ~connection() {
    if (fd_ >= 0)
      ::close(fd_);
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Writes what the kernel takes until `bytes` are out or the node has
  /// closed the connection; returns how many went out. Never raises SIGPIPE.
  size_t send(const char* data, size_t size) {
    size_t done = 0;
    while (done < size) {
      auto n = ::send(fd_, data + done, size - done, MSG_NOSIGNAL);
      if (n <= 0)
        break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  size_t send(const std::string& bytes) {
    return send(bytes.data(), bytes.size());
  }

  /// Waits up to `timeout` for the node to close the connection (EOF or
  /// reset); bytes it sends meanwhile are read and dropped.
  bool closed_by_node(std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - steady::now());
      pollfd pfd{fd_, POLLIN | POLLRDHUP, 0};
      auto rc = ::poll(&pfd, 1, static_cast<int>(std::max<long>(left.count(),
                                                                 0)));
      if (rc < 0 && errno == EINTR)
        continue;
      if (rc <= 0)
        return false;
      char buf[4096];
      auto n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
        return true;
    }
  }

  int fd() const {
    return fd_;
  }

private:
  int fd_;
};

/// A real TLS ClientHello record, as a client would open with, made with
/// OpenSSL memory BIOs (no network).
std::string make_client_hello() {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{
    SSL_CTX_new(TLS_client_method()), SSL_CTX_free};
  BOOST_REQUIRE(ctx);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl{SSL_new(ctx.get()), SSL_free};
  BOOST_REQUIRE(ssl);
  auto in = BIO_new(BIO_s_mem());
  auto out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out); // the SSL owns both now
  SSL_set_connect_state(ssl.get());
  BOOST_REQUIRE_LE(SSL_do_handshake(ssl.get()), 0); // waits for the server
  char* data = nullptr;
  auto size = BIO_get_mem_data(out, &data);
  BOOST_REQUIRE_GT(size, 5);
  BOOST_REQUIRE_EQUAL(data[0], '\x16'); // a handshake record
  return std::string(data, static_cast<size_t>(size));
}

/// A client sending a ClientHello one byte per `pace`, in its own thread,
/// all but the last byte, then waiting: its handshake never ends. Notices
/// at once when the node closes the connection.
class trickler {
public:
  trickler(uint16_t port, std::string hello, std::chrono::milliseconds pace)
    : conn_(port), started_(steady::now()) {
    thread_ = std::thread{[this, hello = std::move(hello), pace] {
      size_t next = 0;
      while (!stop_) {
        if (next + 1 < hello.size()) {
          if (conn_.send(hello.data() + next, 1) != 1) {
            note_cut();
            return;
          }
          sent_ = ++next;
        }
        // The pacing delay, which also watches for the node hanging up.
        if (conn_.closed_by_node(pace)) {
          note_cut();
          return;
        }
      }
    }};
  }

  ~trickler() {
    stop_ = true;
    thread_.join();
  }

  size_t sent() const {
    return sent_;
  }

  /// How long after connecting the node closed the connection, if it did.
  std::optional<std::chrono::milliseconds> cut_after() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return cut_after_;
  }

private:
  void note_cut() {
    std::lock_guard<std::mutex> guard{mtx_};
    cut_after_ = std::chrono::duration_cast<std::chrono::milliseconds>(
      steady::now() - started_);
  }

  connection conn_;
  steady::time_point started_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> sent_{0};
  mutable std::mutex mtx_;
  std::optional<std::chrono::milliseconds> cut_after_;
  std::thread thread_;
};

/// The first bytes of a ClientHello, different for every other connection:
/// just past the record header, or half of it.
std::string partial_hello(const std::string& hello, size_t i) {
  return hello.substr(0, i % 2 == 0 ? 9 : hello.size() / 2);
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(hostile, fixture)

BOOST_AUTO_TEST_CASE(a_node_under_attack_serves_a_good_client_in_bounded_memory) {
  // Unfinished handshakes are cut only after 120 s here, so all attacks
  // last for the whole check (the next test covers the cut).
  attacked_node n{{"ping:int:16"}, server_args("120s")};
  auto pid = n.pid();
  local_node<> good{client.args()};
  auto [tx, rx] = good.open<int32_t>(n.where("ping"));
  // Warm-up, and the pace without an attack: 1,000 round trips.
  auto round_trips = [&, &tx = tx, &rx = rx](steady::duration limit) {
    auto deadline = steady::now() + limit;
    int done = 0;
    for (int i = 1; i <= 1000 && steady::now() < deadline; ++i) {
      if (auto err = tx.send(i))
        BOOST_FAIL("send " << i << ": " << netchan::to_string(err));
      auto got = rx.receive_for(30s);
      if (!got)
        BOOST_FAIL("receive " << i << ": " << netchan::to_string(got.error()));
      BOOST_REQUIRE_EQUAL(*got, i);
      done = i;
    }
    return done;
  };
  auto calm_cpu = cpu_seconds(pid);
  auto calm_start = steady::now();
  BOOST_REQUIRE_EQUAL(round_trips(120s), 1000);
  auto calm_took = std::chrono::duration_cast<std::chrono::milliseconds>(
    steady::now() - calm_start);
  calm_cpu = cpu_seconds(pid) - calm_cpu;
  auto baseline = memory_kib(pid, "VmRSS:");
  auto peak_reset = reset_peak_memory(pid);
  auto fds_before = open_fds(pid);
  auto hello = make_client_hello();
  // 1 MiB of random bytes: 16 connections of 64 KiB, each written and
  // closed, and a 17th written and kept open.
  auto seed = std::random_device{}();
  BOOST_TEST_MESSAGE("random bytes from seed " << seed);
  std::mt19937 rng{seed};
  std::string noise(64 * 1024, '\0');
  size_t noise_sent = 0;
  std::unique_ptr<connection> noisy_open;
  for (int i = 0; i < 17; ++i) {
    for (auto& c : noise)
      c = static_cast<char>(rng());
    auto conn = std::make_unique<connection>(n.port);
    noise_sent += conn->send(noise);
    if (i == 16)
      noisy_open = std::move(conn);
  }
  // 20 half-open handshakes: part of a ClientHello, then silence.
  std::vector<std::unique_ptr<connection>> half_open;
  for (size_t i = 0; i < 20; ++i) {
    half_open.push_back(std::make_unique<connection>(n.port));
    BOOST_REQUIRE_GT(half_open.back()->send(partial_hello(hello, i)), 0u);
  }
  // 5 clients trickling a ClientHello, a byte every 20 ms.
  std::vector<std::unique_ptr<trickler>> tricklers;
  for (int i = 0; i < 5; ++i)
    tricklers.push_back(std::make_unique<trickler>(n.port, hello, 20ms));
  // The check: 1,000 round trips through the cap-16 channel, in time.
  auto cpu_before = cpu_seconds(pid);
  auto started = steady::now();
  auto done = round_trips(120s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
    steady::now() - started);
  auto cpu = cpu_seconds(pid) - cpu_before;
  BOOST_CHECK_EQUAL(done, 1000);
  BOOST_CHECK(n.alive());
  // The attack was on for the whole check: no half-open connection and no
  // trickler was cut (nor closed for any other reason).
  size_t still_open = 0;
  for (auto& c : half_open)
    still_open += c->closed_by_node(0ms) ? 0 : 1;
  BOOST_CHECK_EQUAL(still_open, half_open.size());
  size_t trickled = 0;
  for (auto& t : tricklers) {
    BOOST_CHECK(!t->cut_after());
    trickled += t->sent();
  }
  auto rss = memory_kib(pid, "VmRSS:");
  auto peak = memory_kib(pid, "VmHWM:");
  auto fds_during = open_fds(pid);
  BOOST_TEST_MESSAGE("attacked node: RSS baseline "
                     << baseline << " KiB, now " << rss << " KiB (+"
                     << (rss > baseline ? rss - baseline : 0) << "), peak since "
                     << (peak_reset ? "baseline " : "start ") << peak
                     << " KiB; 1000 round trips in " << took.count()
                     << " ms, attacked node used " << cpu << " s CPU meanwhile ("
                     << static_cast<int>(100 * cpu * 1000 / took.count())
                     << " % of a core); without the attack "
                     << calm_took.count() << " ms, " << calm_cpu
                     << " s CPU; random bytes written " << noise_sent
                     << ", bytes trickled " << trickled << "; open fds "
                     << fds_before << " before, " << fds_during << " during");
  BOOST_CHECK_LT(rss, baseline + 64 * 1024);
  if (peak_reset)
    BOOST_CHECK_LT(peak, baseline + 64 * 1024);
  // Everything closed: the node still serves a new client.
  tricklers.clear();
  half_open.clear();
  noisy_open.reset();
  require_node_serves(n);
  BOOST_CHECK(eventually([&] { return open_fds(pid) <= fds_during - 20; },
                         30s));
  BOOST_TEST_MESSAGE("open fds after the attack: " << open_fds(pid));
}

BOOST_AUTO_TEST_CASE(unfinished_tls_handshakes_are_cut_after_the_connect_timeout) {
  attacked_node n{{"ping:int:1"}, server_args("2s")};
  auto pid = n.pid();
  auto fds_before = open_fds(pid);
  auto hello = make_client_hello();
  auto opened = steady::now();
  connection silent{n.port};
  connection partial{n.port};
  BOOST_REQUIRE_GT(partial.send(partial_hello(hello, 1)), 0u);
  trickler slow{n.port, hello, 50ms}; // ~15 s for a whole ClientHello
  BOOST_REQUIRE(silent.closed_by_node(30s));
  BOOST_REQUIRE(partial.closed_by_node(30s));
  auto cut = std::chrono::duration_cast<std::chrono::milliseconds>(
    steady::now() - opened);
  BOOST_REQUIRE(eventually([&] { return slow.cut_after().has_value(); }, 30s));
  BOOST_TEST_MESSAGE("cut after " << cut.count() << " ms; the trickler after "
                                  << slow.cut_after()->count() << " ms, "
                                  << slow.sent() << " of " << hello.size()
                                  << " bytes sent");
  BOOST_CHECK_GE(cut.count(), 1900); // not before its time
  BOOST_CHECK_GE(slow.cut_after()->count(), 1900);
  BOOST_CHECK_LT(slow.sent() + 1, hello.size());
  // The node let go of the descriptors, and still serves.
  BOOST_CHECK(eventually([&] { return open_fds(pid) <= fds_before; }, 30s));
  require_node_serves(n);
  // A node with a connection in mid-handshake can still exit: CAF waits for
  // the connection, and the cut ends it (without it, this waits forever).
  // (Once the good client's connection is gone, one more descriptor is the
  // node accepting ours.)
  BOOST_REQUIRE(eventually([&] { return open_fds(pid) <= fds_before; }, 30s));
  connection lingering{n.port};
  BOOST_REQUIRE_GT(lingering.send(partial_hello(hello, 0)), 0u);
  BOOST_REQUIRE(eventually([&] { return open_fds(pid) > fds_before; }, 30s));
  auto stopping = steady::now();
  n.proc->close_stdin();
  BOOST_CHECK_EQUAL(n.proc->wait(30s), 0);
  BOOST_TEST_MESSAGE("exited "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(
                          steady::now() - stopping)
                          .count()
                     << " ms after being asked to, mid-handshake");
}

BOOST_AUTO_TEST_CASE(a_value_of_another_layout_under_the_same_name_is_refused) {
  attacked_node n{{"jobs:job:4"}, server_args()};
  // Two nodes in this process: one whose "test::job" is a fake_job, one
  // with the real test::job. The owner, in between, only sees envelopes.
  local_node<fake_config> stranger{client.args()};
  local_node<> worker{client.args()};
  auto [fake_tx, fake_rx] = stranger.open<fake_job>(n.where("jobs"));
  auto [tx, rx] = worker.open<test::job>(n.where("jobs"));
  BOOST_REQUIRE(!fake_tx.send(fake_job{"not a job at all"}));
  auto got = rx.receive_for(30s);
  BOOST_REQUIRE(!got);
  auto text = netchan::to_string(got.error());
  BOOST_TEST_MESSAGE(text);
  BOOST_CHECK(netchan::is(got.error(), netchan::errc::malformed_value));
  BOOST_CHECK_MESSAGE(text.find("do not decode as test::job")
                        != std::string::npos,
                      text);
  // The bad value was dropped; the next good one gets through.
  test::job good{"checksum", {1, 2, 3}, 42};
  BOOST_REQUIRE(!tx.send(good));
  auto next = rx.receive_for(30s);
  if (!next)
    BOOST_FAIL("receive: " << netchan::to_string(next.error()));
  BOOST_CHECK(*next == good);
  BOOST_CHECK(n.alive());
}

BOOST_AUTO_TEST_CASE(a_node_raises_its_open_file_limit_to_the_hard_limit) {
  rlimit ours{};
  BOOST_REQUIRE_EQUAL(::getrlimit(RLIMIT_NOFILE, &ours), 0);
  if (ours.rlim_max < 128) {
    BOOST_TEST_MESSAGE("hard limit " << ours.rlim_max
                                     << " leaves no room to test; skipped");
    return;
  }
  // The child inherits a soft limit well below the hard one; only starting
  // its node can raise it. (Ours must leave room for the pipes to the child.)
  int highest = 0;
  if (auto d = ::opendir("/proc/self/fd")) {
    while (auto e = ::readdir(d))
      if (e->d_name[0] != '.')
        highest = std::max(highest, std::atoi(e->d_name));
    ::closedir(d);
  }
  auto lowered = ours;
  lowered.rlim_cur = static_cast<rlim_t>(highest) + 32;
  BOOST_REQUIRE_LT(lowered.rlim_cur, ours.rlim_max);
  BOOST_REQUIRE_EQUAL(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
  std::unique_ptr<attacked_node> n;
  try {
    n = std::make_unique<attacked_node>(std::vector<std::string>{},
                                        server_args());
  } catch (...) {
    ::setrlimit(RLIMIT_NOFILE, &ours);
    throw;
  }
  BOOST_REQUIRE_EQUAL(::setrlimit(RLIMIT_NOFILE, &ours), 0);
  std::ifstream in{"/proc/" + std::to_string(n->pid()) + "/limits"};
  std::string line;
  std::string soft;
  std::string hard;
  while (std::getline(in, line))
    if (line.compare(0, 14, "Max open files") == 0) {
      std::istringstream fields{line.substr(14)};
      fields >> soft >> hard;
    }
  BOOST_TEST_MESSAGE("node started with soft limit "
                     << lowered.rlim_cur << ": now soft " << soft << ", hard "
                     << hard);
  BOOST_REQUIRE(!hard.empty());
  BOOST_CHECK_EQUAL(soft, hard);
}

BOOST_AUTO_TEST_SUITE_END()
