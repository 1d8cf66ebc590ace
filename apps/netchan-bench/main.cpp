// netchan-bench: what netchan delivers between two processes over TLS on
// 127.0.0.1, beside what raw CAF does over the same TLS middleman.
//
//   netchan-bench [--seconds S] [--json]
//
// Every row counts values where the receiving application got them, and
// checks the books: values the sender was told were sent = values received.
// The bench starts its second process itself (this binary, --role ...) and
// makes a throw-away PKI; nothing to set up.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/openssl/all.hpp>
#include <caf/scoped_actor.hpp>

#include "certs.hpp"
#include "netchan/netchan.hpp"
#include "process.hpp"

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

// -- shared ---------------------------------------------------------------------

struct options {
  double seconds = 2.0;
  bool json = false;
  std::string role;
  std::string to;
  size_t threads = 1;
};

struct row {
  std::string scenario;
  std::string detail;
  double per_second = 0;
  double median_us = -1;
  double p99_us = -1;
  uint64_t sent = 0;
  uint64_t received = 0;
  std::string baseline;     // the row this one is compared with
  double ratio = -1;        // per_second / baseline's per_second
};

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return -1;
  std::sort(xs.begin(), xs.end());
  auto i = static_cast<size_t>(std::ceil(p * xs.size())) - 1;
  return xs[std::min(i, xs.size() - 1)];
}

using raw_ping_atom = caf::atom_constant<caf::atom("b_ping")>;
using raw_data_atom = caf::atom_constant<caf::atom("b_data")>;
using raw_ack_atom = caf::atom_constant<caf::atom("b_ack")>;
using raw_hello_atom = caf::atom_constant<caf::atom("b_hello")>;

constexpr uint64_t raw_window = 10000;
constexpr uint64_t raw_ack_every = 1000;

// -- the child process ----------------------------------------------------------

int child_main(const options& opt, netchan::node& n, caf::actor_system& sys) {
  if (opt.role == "stream-sender") {
    auto ch = n.open<uint64_t>(opt.to);
    if (!ch)
      return std::cout << "error: " << netchan::to_string(ch.error()) << std::endl, 1;
    std::atomic<uint64_t> sent{0};
    std::vector<std::thread> ts;
    for (size_t t = 0; t < opt.threads; ++t)
      ts.emplace_back([&, tx = ch->first] {
        for (uint64_t i = 1;; ++i) {
          if (tx.send(i))
            return; // closed: the run is over
          sent.fetch_add(1, std::memory_order_relaxed);
        }
      });
    for (auto& t : ts)
      t.join();
    std::cout << "sent " << sent.load() << std::endl;
    return 0;
  }
  if (opt.role == "rv-receiver") {
    auto ch = n.open<uint64_t>(opt.to);
    if (!ch)
      return std::cout << "error: " << netchan::to_string(ch.error()) << std::endl, 1;
    uint64_t received = 0;
    for (;;) {
      auto v = ch->second.receive();
      if (!v)
        break;
      ++received;
    }
    std::cout << "received " << received << std::endl;
    return 0;
  }
  if (opt.role == "raw-source" || opt.role == "raw-pinger") {
    auto colon = opt.to.rfind(':');
    auto sink = caf::openssl::remote_actor(sys, opt.to.substr(0, colon),
                                           static_cast<uint16_t>(std::stoul(
                                             opt.to.substr(colon + 1))));
    if (!sink)
      return std::cout << "error: " << caf::to_string(sink.error()) << std::endl, 1;
    caf::scoped_actor self{sys};
    if (opt.role == "raw-source") {
      // One value per CAF message, at most raw_window in flight, until the
      // driver ends this process.
      uint64_t sent = 0;
      uint64_t acked = 0;
      for (;;) {
        while (sent - acked < raw_window)
          self->send(*sink, raw_data_atom::value, ++sent);
        self->receive([&](raw_ack_atom, uint64_t n) { acked = n; });
      }
    } else {
      std::vector<double> lat;
      uint64_t n = 0;
      bool stop = false;
      auto t0 = clock_type::now();
      while (!stop) {
        auto start = clock_type::now();
        self->request(*sink, 10s, raw_ping_atom::value, ++n)
          .receive([&](raw_ping_atom, uint64_t) {},
                   [&](caf::error&) { stop = true; });
        lat.push_back(std::chrono::duration<double, std::micro>(
                        clock_type::now() - start)
                        .count());
        if (seconds_since(t0) > opt.seconds)
          stop = true;
      }
      std::cout << "pings " << lat.size() << " " << seconds_since(t0) << " "
                << percentile(lat, 0.5) << " " << percentile(lat, 0.99)
                << std::endl;
    }
    return 0;
  }
  std::cout << "error: unknown role " << opt.role << std::endl;
  return 2;
}

// -- the driver -----------------------------------------------------------------

struct driver {
  options opt;
  ::pki::temp_dir dir;
  test::pki pki{dir.path(), "bench-ca"};
  test::node_certs mine = pki.issue("driver");
  test::node_certs theirs = pki.issue("child");
  std::string self_path;
  netchan::config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::optional<netchan::node> node;
  std::vector<row> rows;

  caf::error start() {
    auto args = mine.args();
    args.push_back("--netchan.listen=127.0.0.1:0");
    if (auto err = cfg.load(args))
      return err;
    sys = std::make_unique<caf::actor_system>(cfg);
    auto n = netchan::node::start(*sys);
    if (!n)
      return n.error();
    node.emplace(std::move(*n));
    return caf::none;
  }

  std::unique_ptr<test::child> spawn(std::vector<std::string> args) {
    args.push_back("--seconds");
    args.push_back(std::to_string(opt.seconds));
    args.push_back("--");
    for (auto& a : theirs.args())
      args.push_back(a);
    return std::make_unique<test::child>(self_path, args);
  }

  void stream(size_t cap, size_t senders) {
    auto name = "stream-" + std::to_string(cap) + "-" + std::to_string(senders);
    auto ch = node->create<uint64_t>(name, cap);
    auto child = spawn({"--role", "stream-sender", "--to",
                        node->address() + "/" + name, "--threads",
                        std::to_string(senders)});
    auto& rx = ch->second;
    uint64_t received = 0;
    auto first = rx.receive_for(30s);
    if (!first)
      return fail(name, first.error(), *child);
    ++received;
    auto t0 = clock_type::now();
    uint64_t in_window = 0;
    while (seconds_since(t0) < opt.seconds) {
      if (!rx.receive_for(30s))
        break;
      ++received;
      ++in_window;
    }
    auto elapsed = seconds_since(t0);
    static_cast<void>(ch->first.close());
    for (;;) { // drain: values sent on credit before the close still arrive
      auto v = rx.receive_for(30s);
      if (!v)
        break;
      ++received;
    }
    auto sent = child->wait_for("sent ", 30s);
    child->wait(30s);
    row r;
    r.scenario = "stream";
    r.detail = "cap " + std::to_string(cap) + ", " + std::to_string(senders)
               + (senders == 1 ? " sender" : " senders");
    r.per_second = in_window / elapsed;
    r.sent = sent ? std::stoull(*sent) : 0;
    r.received = received;
    r.baseline = "raw CAF one-way";
    rows.push_back(r);
  }

  void rendezvous() {
    auto ch = node->create<uint64_t>("rv", 0);
    auto child = spawn({"--role", "rv-receiver", "--to",
                        node->address() + "/rv"});
    auto& tx = ch->first;
    std::vector<double> lat;
    // The first transfer waits for the receiver to connect: not measured.
    if (auto err = tx.send_for(0, 30s))
      return fail("rendezvous", err, *child);
    auto t0 = clock_type::now();
    uint64_t n = 0;
    while (seconds_since(t0) < opt.seconds) {
      auto start = clock_type::now();
      if (auto err = tx.send(++n))
        return fail("rendezvous", err, *child);
      lat.push_back(std::chrono::duration<double, std::micro>(
                      clock_type::now() - start)
                      .count());
    }
    auto elapsed = seconds_since(t0);
    static_cast<void>(tx.close());
    auto got = child->wait_for("received ", 30s);
    child->wait(30s);
    row r;
    r.scenario = "rendezvous";
    r.detail = "cap 0, owner beside sender (2 processes)";
    r.per_second = lat.size() / elapsed;
    r.median_us = percentile(lat, 0.5);
    r.p99_us = percentile(lat, 0.99);
    r.sent = n + 1;
    r.received = got ? std::stoull(*got) : 0;
    r.baseline = "raw CAF request/response";
    rows.push_back(r);
  }

  /// Raw CAF over the same TLS middleman: the child sends one value per
  /// message (at most 10,000 in flight), or pings request/response.
  void raw_baselines() {
    std::atomic<uint64_t> received{0};
    auto sink = sys->spawn([&](caf::event_based_actor* self) -> caf::behavior {
      return {
        [](raw_hello_atom) { return raw_hello_atom::value; },
        [&, self](raw_data_atom, uint64_t n) {
          received = n;
          if (n % raw_ack_every == 0)
            self->send(caf::actor_cast<caf::actor>(self->current_sender()),
                       raw_ack_atom::value, n);
        },
        [](raw_ping_atom, uint64_t n) { return caf::make_message(raw_ping_atom::value, n); },
      };
    });
    auto port = caf::openssl::publish(sink, 0, "127.0.0.1", true);
    if (!port) {
      std::cerr << "raw baseline: " << caf::to_string(port.error()) << '\n';
      caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
      return;
    }
    auto where = "127.0.0.1:" + std::to_string(*port);
    { // one-way, windowed
      auto child = spawn({"--role", "raw-source", "--to", where});
      auto deadline = clock_type::now() + 30s;
      while (received.load() == 0 && clock_type::now() < deadline)
        std::this_thread::yield();
      auto r0 = received.load();
      auto t0 = clock_type::now();
      std::this_thread::sleep_until(t0 + std::chrono::duration<double>(opt.seconds));
      auto r1 = received.load();
      auto elapsed = seconds_since(t0);
      child->kill(); // raw CAF has no close: the source process is ended
      child->wait(10s);
      row r;
      r.scenario = "raw CAF one-way";
      r.detail = "1 value per message, window 10,000";
      r.per_second = (r1 - r0) / elapsed;
      r.sent = r1;
      r.received = r1;
      rows.push_back(r);
    }
    { // request/response
      auto child = spawn({"--role", "raw-pinger", "--to", where});
      auto line = child->wait_for("pings ", std::chrono::seconds{30}
                                              + std::chrono::seconds{
                                                static_cast<int>(opt.seconds)});
      child->wait(30s);
      row r;
      r.scenario = "raw CAF request/response";
      r.detail = "1 requester, sequential";
      if (line) {
        std::istringstream in{*line};
        double count = 0, secs = 1;
        in >> count >> secs >> r.median_us >> r.p99_us;
        r.per_second = count / secs;
        r.sent = r.received = static_cast<uint64_t>(count);
      }
      rows.push_back(r);
    }
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  }

  void fail(const std::string& what, const caf::error& err, test::child& c) {
    std::cerr << what << ": " << netchan::to_string(err) << "\n"
              << c.transcript() << '\n';
  }

  void compare() {
    for (auto& r : rows)
      for (auto& b : rows)
        if (!r.baseline.empty() && b.scenario == r.baseline
            && b.per_second > 0)
          r.ratio = r.per_second / b.per_second;
  }

  void print() const {
    if (opt.json) {
      std::cout << "[\n";
      for (size_t i = 0; i < rows.size(); ++i) {
        auto& r = rows[i];
        std::cout << "  {\"scenario\": \"" << r.scenario << "\", \"detail\": \""
                  << r.detail << "\", \"values_per_second\": " << r.per_second
                  << ", \"median_us\": " << r.median_us << ", \"p99_us\": "
                  << r.p99_us << ", \"sent\": " << r.sent
                  << ", \"received\": " << r.received << ", \"baseline\": \""
                  << r.baseline << "\", \"ratio\": " << r.ratio << "}"
                  << (i + 1 < rows.size() ? "," : "") << "\n";
      }
      std::cout << "]\n";
      return;
    }
    std::printf("%-26s %-42s %12s %10s %10s %10s %10s %8s\n", "scenario",
                "detail", "values/s", "median us", "p99 us", "sent",
                "received", "ratio");
    for (auto& r : rows) {
      auto num = [](double x, const char* fmt) {
        char buf[32];
        if (x < 0)
          return std::string{"-"};
        std::snprintf(buf, sizeof(buf), fmt, x);
        return std::string{buf};
      };
      std::printf("%-26s %-42s %12s %10s %10s %10llu %10llu %8s\n",
                  r.scenario.c_str(), r.detail.c_str(),
                  num(r.per_second, "%.0f").c_str(),
                  num(r.median_us, "%.0f").c_str(),
                  num(r.p99_us, "%.0f").c_str(),
                  static_cast<unsigned long long>(r.sent),
                  static_cast<unsigned long long>(r.received),
                  num(r.ratio, "%.2f").c_str());
    }
    std::printf("(ratio: values/s over the baseline row of the same run; "
                "stream rows count values received, and every run checks "
                "sent == received)\n");
  }
};

} // namespace

int main(int argc, char** argv) {
  options opt;
  std::vector<std::string> config_args;
  bool rest = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (rest) {
      config_args.push_back(a);
    } else if (a == "--") {
      rest = true;
    } else if (a == "--seconds" && i + 1 < argc) {
      opt.seconds = std::stod(argv[++i]);
    } else if (a == "--json") {
      opt.json = true;
    } else if (a == "--role" && i + 1 < argc) {
      opt.role = argv[++i];
    } else if (a == "--to" && i + 1 < argc) {
      opt.to = argv[++i];
    } else if (a == "--threads" && i + 1 < argc) {
      opt.threads = std::stoul(argv[++i]);
    } else {
      std::cerr << "usage: netchan-bench [--seconds S] [--json]\n";
      return 2;
    }
  }
  if (!opt.role.empty()) {
    netchan::config cfg;
    if (auto err = cfg.load(config_args))
      return std::cout << "error: " << netchan::to_string(err) << std::endl, 2;
    caf::actor_system sys{cfg};
    auto n = netchan::node::start(sys);
    if (!n)
      return std::cout << "error: " << netchan::to_string(n.error()) << std::endl, 2;
    return child_main(opt, *n, sys);
  }
  driver d;
  d.opt = opt;
  d.self_path = "/proc/self/exe";
  {
    char buf[4096];
    auto len = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (len > 0)
      d.self_path.assign(buf, static_cast<size_t>(len));
  }
  if (auto err = d.start()) {
    std::cerr << netchan::to_string(err) << '\n';
    return 1;
  }
  d.raw_baselines();
  for (size_t cap : {64, 1024})
    for (size_t senders : {1, 8})
      d.stream(cap, senders);
  d.rendezvous();
  d.compare();
  d.print();
  bool books_balance = true;
  for (auto& r : d.rows)
    if (r.scenario != "raw CAF one-way" && r.sent != r.received)
      books_balance = false;
  return books_balance ? 0 : 1;
}
