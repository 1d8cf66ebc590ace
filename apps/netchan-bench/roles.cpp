// The child processes of netchan-bench: each runs one role and reports on
// stdout, one line per fact ("sent 12 returned 1"), then "peak_kb N" last.
// The driver ends a role by closing its stdin, or by closing the channel.

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/openssl/all.hpp>
#include <caf/scoped_actor.hpp>

#include "bench.hpp"
#include "netchan/go.hpp"
#include "netchan/netchan.hpp"

using namespace std::chrono_literals;

namespace bench {

namespace {

int fail(const std::string& what) {
  std::cout << "error: " << what << std::endl;
  return 1;
}

/// Calls `on_line` for each line of stdin, then `on_eof`, on a thread of its
/// own; returns that thread (joinable once stdin is closed).
template <class OnLine, class OnEof>
std::thread watch_stdin(OnLine on_line, OnEof on_eof) {
  return std::thread{[on_line, on_eof] {
    std::string line;
    while (std::getline(std::cin, line))
      on_line(line);
    on_eof();
  }};
}

void wait_for_stdin_eof() {
  std::string line;
  while (std::getline(std::cin, line)) {
    // nothing: the driver closes our stdin when it is done
  }
}

// -- netchan roles ------------------------------------------------------------

/// Sends 1, 2, 3, ... from `opt.threads` threads until the channel closes.
int stream_sender(const options& opt, netchan::node& n) {
  auto ch = n.open<uint64_t>(opt.to);
  if (!ch)
    return fail(netchan::to_string(ch.error()));
  std::cout << "open" << std::endl;
  std::atomic<uint64_t> attempts{0};
  std::atomic<uint64_t> returned{0};
  std::vector<std::thread> ts;
  for (size_t t = 0; t < opt.threads; ++t)
    ts.emplace_back([&, tx = ch->first] {
      for (uint64_t i = 1; opt.count == 0 || i <= opt.count; ++i) {
        attempts.fetch_add(1, std::memory_order_relaxed);
        if (tx.send(i)) {
          returned.fetch_add(1); // closed: the value is back with us
          return;
        }
      }
    });
  for (auto& t : ts)
    t.join();
  std::cout << "sent " << attempts.load() << " returned " << returned.load()
            << std::endl;
  return 0;
}

/// Receives from `opt.threads` threads until the channel closes. Stdin says
/// "stall" (stop taking values) and "resume"; its end resumes.
int receiver(const options& opt, netchan::node& n) {
  auto ch = n.open<uint64_t>(opt.to);
  if (!ch)
    return fail(netchan::to_string(ch.error()));
  std::mutex mtx;
  std::condition_variable cv;
  bool stalled = false;
  auto set = [&](bool value) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      stalled = value;
    }
    cv.notify_all();
  };
  auto input = watch_stdin(
    [&](const std::string& line) {
      if (line == "stall")
        set(true);
      else if (line == "resume")
        set(false);
    },
    [&] { set(false); });
  input.detach(); // it may outlive the receivers: the channel ends them
  std::cout << "open" << std::endl;
  std::atomic<uint64_t> received{0};
  std::vector<std::string> errors(opt.threads);
  std::vector<std::thread> ts;
  for (size_t t = 0; t < opt.threads; ++t)
    ts.emplace_back([&, t, rx = ch->second] {
      for (;;) {
        {
          std::unique_lock<std::mutex> guard{mtx};
          cv.wait(guard, [&] { return !stalled; });
        }
        auto v = rx.receive();
        if (!v) {
          if (!netchan::is(v.error(), netchan::errc::closed))
            errors[t] = netchan::to_string(v.error());
          return;
        }
        if (received.fetch_add(1, std::memory_order_relaxed) + 1 == opt.count)
          return; // --count: done (with one thread; profiling uses one)
      }
    });
  for (auto& t : ts)
    t.join();
  for (auto& e : errors)
    if (!e.empty())
      std::cout << "warning: " << e << std::endl;
  std::cout << "received " << received.load() << std::endl;
  return 0;
}

/// Hosts channel `opt.to` (capacity `opt.threads`) until stdin closes.
int owner(const options& opt, netchan::node& n) {
  auto ch = n.create<uint64_t>(opt.to, opt.threads);
  if (!ch)
    return fail(netchan::to_string(ch.error()));
  std::cout << "ready " << n.address() << "/" << opt.to << std::endl;
  wait_for_stdin_eof();
  return 0;
}

/// The Go library's benchmark, listener side: `opt.threads` threads send
/// 1, 2, 3, ... each to one client; the clients echo; this counts echoes.
int echo_listener(const options& opt, caf::actor_system& sys) {
  auto l = netchan::listen<uint64_t>(sys, "127.0.0.1:0");
  if (!l)
    return fail(netchan::to_string(l.error()));
  std::cout << "ready " << l->node().address() << std::endl;
  auto deadline = clock_type::now() + 60s;
  while (l->clients() < opt.clients && clock_type::now() < deadline)
    std::this_thread::sleep_for(5ms); // no event to wait on: poll, bounded
  auto connected = l->clients();
  if (connected < opt.clients)
    return fail("only " + std::to_string(connected) + " of "
                + std::to_string(opt.clients) + " clients connected");
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> attempts{0};
  std::atomic<uint64_t> ok{0};
  std::atomic<uint64_t> returned{0};
  std::atomic<uint64_t> next{0};
  std::vector<std::thread> ts;
  auto t0 = clock_type::now();
  for (size_t t = 0; t < opt.threads; ++t)
    ts.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        attempts.fetch_add(1, std::memory_order_relaxed);
        if (auto err = l->send(next.fetch_add(1) + 1)) {
          returned.fetch_add(1);
          std::cout << "warning: " << netchan::to_string(err) << std::endl;
          return;
        }
        ok.fetch_add(1, std::memory_order_relaxed);
      }
    });
  // The listener's receive has no deadline: a thread of its own counts, and
  // shutting the node down below ends it.
  std::atomic<uint64_t> received{0};
  std::thread counter{[&received, copy = *l] {
    while (copy.receive())
      received.fetch_add(1, std::memory_order_relaxed);
  }};
  std::this_thread::sleep_until(t0 + std::chrono::duration<double>(
                                       opt.seconds));
  auto in_window = received.load();
  auto elapsed = seconds_since(t0);
  stop = true;
  for (auto& t : ts)
    t.join();
  // Every value sent comes back: wait for the echoes still on their way.
  auto drain_until = clock_type::now() + 30s;
  while (received.load() < ok.load() && clock_type::now() < drain_until)
    std::this_thread::sleep_for(1ms);
  auto clients = l->clients();
  l->node().shutdown();
  counter.join();
  std::cout << "echo sent " << attempts.load() << " ok " << ok.load()
            << " returned " << returned.load() << " received "
            << received.load() << " in_window " << in_window << " elapsed "
            << elapsed << " clients " << clients << std::endl;
  wait_for_stdin_eof();
  return 0;
}

/// The Go library's benchmark, client side: echoes what the listener sends
/// until stdin closes.
int echo_client(const options& opt, caf::actor_system& sys) {
  auto d = netchan::dial<uint64_t>(sys, opt.to);
  if (!d)
    return fail(netchan::to_string(d.error()));
  std::cout << "dialed" << std::endl;
  uint64_t processed = 0;
  uint64_t returned = 0;
  std::thread worker{[&] {
    for (;;) {
      auto v = d->receive();
      if (!v)
        return; // our inbox was closed below
      ++processed;
      if (d->send(*v))
        ++returned;
    }
  }};
  wait_for_stdin_eof();
  static_cast<void>(d->receiving().close());
  worker.join();
  std::cout << "processed " << processed << " returned " << returned
            << std::endl;
  return 0;
}

// -- raw CAF roles ------------------------------------------------------------

caf::expected<caf::actor> connect_raw(caf::actor_system& sys,
                                      const std::string& to) {
  auto colon = to.rfind(':');
  return caf::openssl::remote_actor(sys, to.substr(0, colon),
                                    static_cast<uint16_t>(
                                      std::stoul(to.substr(colon + 1))));
}

/// One value per CAF message from `opt.threads` threads, each with at most
/// raw_window / threads in flight, until stdin closes.
int raw_source(const options& opt, caf::actor_system& sys) {
  auto sink = connect_raw(sys, opt.to);
  if (!sink)
    return fail(caf::to_string(sink.error()));
  std::atomic<bool> stop{false};
  auto input = watch_stdin([](const std::string&) {}, [&] { stop = true; });
  std::atomic<uint64_t> total{0};
  auto window = std::max<uint64_t>(raw_window / opt.threads, raw_ack_every);
  std::vector<std::thread> ts;
  for (size_t t = 0; t < opt.threads; ++t)
    ts.emplace_back([&] {
      caf::scoped_actor self{sys};
      uint64_t sent = 0;
      uint64_t acked = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        while (sent - acked < window)
          self->send(*sink, raw_data_atom::value, ++sent);
        self->receive([&](raw_ack_atom, uint64_t n) { acked = n; },
                      caf::after(std::chrono::milliseconds{100}) >> [] {});
      }
      // CAF drops what it has not written when the process exits: a request
      // behind the values (same order) returns once the sink has them all.
      self->request(*sink, 30s, raw_ping_atom::value, sent)
        .receive([](raw_ping_atom, uint64_t) {}, [](caf::error&) {});
      total.fetch_add(sent);
    });
  for (auto& t : ts)
    t.join();
  input.join();
  std::cout << "sent " << total.load() << std::endl;
  return 0;
}

/// Sequential request/response from `opt.threads` threads for
/// `opt.seconds`.
int raw_pinger(const options& opt, caf::actor_system& sys) {
  auto sink = connect_raw(sys, opt.to);
  if (!sink)
    return fail(caf::to_string(sink.error()));
  std::vector<std::vector<double>> lat(opt.threads);
  std::atomic<uint64_t> failed{0};
  std::vector<std::thread> ts;
  auto t0 = clock_type::now();
  for (size_t t = 0; t < opt.threads; ++t)
    ts.emplace_back([&, t] {
      caf::scoped_actor self{sys};
      uint64_t n = 0;
      while (seconds_since(t0) < opt.seconds) {
        auto start = clock_type::now();
        bool ok = true;
        self->request(*sink, 10s, raw_ping_atom::value, ++n)
          .receive([](raw_ping_atom, uint64_t) {},
                   [&](caf::error&) { ok = false; });
        if (!ok) {
          failed.fetch_add(1);
          return;
        }
        lat[t].push_back(micros_since(start));
      }
    });
  for (auto& t : ts)
    t.join();
  auto elapsed = seconds_since(t0);
  auto all = merged(lat);
  auto count = all.size();
  std::cout << "pings " << count << " failed " << failed.load() << " elapsed "
            << elapsed << " median " << percentile(all, 0.5) << " p99 "
            << percentile(all, 0.99) << " max " << percentile(all, 1.0)
            << std::endl;
  return 0;
}

// -- scale: what a channel costs while idle ----------------------------------

/// Resident kB now, after the allocator settled what the last step freed.
uint64_t resident_kb() {
  return status_kb(0, "VmRSS");
}

/// Gets channels "TO-0".."TO-N" (N = opt.count) through `get(name)`,
/// keeping both handles of each, as an application would, and reports
/// "WHAT N kb_before A kb_after B elapsed S" for "TO-1".."TO-N": "TO-0" comes
/// first, unmeasured, so that the node's start-up (or the connection and its
/// TLS session) is not counted as theirs.
template <class Get>
int measure_channels(const options& opt, const char* what, Get get) {
  std::vector<std::pair<netchan::sender<uint64_t>, netchan::receiver<uint64_t>>>
    chans;
  chans.reserve(opt.count + 1);
  auto add = [&](uint64_t i) {
    auto ch = get(opt.to + "-" + std::to_string(i));
    if (!ch)
      return fail(netchan::to_string(ch.error())), false;
    chans.push_back(std::move(*ch));
    return true;
  };
  if (!add(0))
    return 1;
  auto before = resident_kb();
  auto t0 = clock_type::now();
  for (uint64_t i = 1; i <= opt.count; ++i)
    if (!add(i))
      return 1;
  auto elapsed = seconds_since(t0);
  std::cout << what << ' ' << opt.count << " kb_before " << before
            << " kb_after " << resident_kb() << " elapsed " << elapsed
            << std::endl;
  return 0;
}

/// Hosts the channels (capacity 1), then serves until stdin ends.
int scale_host(const options& opt, netchan::node& n) {
  auto create = [&](const std::string& name) {
    return n.create<uint64_t>(name, 1);
  };
  if (auto rc = measure_channels(opt, "hosted", create); rc != 0)
    return rc;
  std::cout << "ready " << n.address() << "/" << opt.to << std::endl;
  wait_for_stdin_eof();
  return 0;
}

/// Opens the channels of a scale_host from this node.
int scale_open(const options& opt, netchan::node& n) {
  return measure_channels(opt, "opened", [&](const std::string& where) {
    return n.open<uint64_t>(where);
  });
}

int with_node(const options& opt, caf::actor_system& sys,
              int (*fn)(const options&, netchan::node&)) {
  auto n = netchan::node::start(sys);
  if (!n)
    return fail(netchan::to_string(n.error()));
  return fn(opt, *n);
}

} // namespace

int run_role(const options& opt) {
  if (opt.role == "tls-echo")
    return run_tls_echo(opt);
  netchan::config cfg;
  if (auto err = cfg.load(opt.config_args))
    return fail(netchan::to_string(err)), 2;
  int rc = 2;
  {
    caf::actor_system sys{cfg};
    if (opt.role == "stream-sender")
      rc = with_node(opt, sys, stream_sender);
    else if (opt.role == "receiver")
      rc = with_node(opt, sys, receiver);
    else if (opt.role == "owner")
      rc = with_node(opt, sys, owner);
    else if (opt.role == "scale-host")
      rc = with_node(opt, sys, scale_host);
    else if (opt.role == "scale-open")
      rc = with_node(opt, sys, scale_open);
    else if (opt.role == "echo-listener")
      rc = echo_listener(opt, sys);
    else if (opt.role == "echo-client")
      rc = echo_client(opt, sys);
    else if (opt.role == "raw-source")
      rc = raw_source(opt, sys);
    else if (opt.role == "raw-pinger")
      rc = raw_pinger(opt, sys);
    else
      fail("unknown role " + opt.role);
    print_peak();
  }
  return rc;
}

} // namespace bench
