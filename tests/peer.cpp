// netchan-test-peer: the other process of multi-process tests.
//
//   netchan-test-peer serve [--channel NAME:TYPE:CAP]... [--echo IN:OUT]
//                     -- CONFIG-ARGS...
//     listens (CONFIG-ARGS say where and with which certificates), hosts
//     the channels, optionally echoes every job from IN to OUT, prints
//     "ready port=N" and serves until its stdin closes.
//   netchan-test-peer stream --to HOST:PORT/NAME --count N [--threads K]
//                     [--size BYTES] -- CONFIG-ARGS...
//     sends the u64 values 1..N (N = 0: until its stdin closes), prints
//     "streaming" once the first value is sent, then "sent N" or
//     "error: ...". With K threads, thread t sends (t << 32 | i) for
//     i = 1..N/K. With --size, sends strings of BYTES bytes instead.
//   netchan-test-peer touch --to HOST:PORT/NAME -- CONFIG-ARGS...
//     sends one u64, prints "touched", then waits (to be killed).
//
//   netchan-test-peer relay --from HOST:PORT/NAME -- CONFIG-ARGS...
//     hosts "mailbox" (channel of sender<int32_t>), prints "ready port=N",
//     receives one sender<int32_t> from NAME, puts it into mailbox, prints
//     "relayed" and waits until its stdin closes.
//   netchan-test-peer use --from HOST:PORT/NAME -- CONFIG-ARGS...
//     receives one sender<int32_t> from NAME, prints "got handle", waits for
//     the line "go", sends 42 through the handle, prints "used" or "error".
//   netchan-test-peer dial --to HOST:PORT --id I --count K [--capacity C]
//                     [--read 0] -- CONFIG-ARGS...
//     dials the listener (its inbox of capacity C; default: dial's),
//     prints "dialed caps F C" (F: the listener's fan-in capacity), sends
//     (I << 32 | k) for k = 1..K, prints "sent K", then prints "got V" for
//     every value the listener sends or replies, until its stdin closes.
//     With --read 0 it never reads its inbox.
//   netchan-test-peer echo --to HOST:PORT [--capacity C] -- CONFIG-ARGS...
//     dials as above, prints "dialed caps F C", sends every value it
//     receives back to the listener until its stdin closes, then prints
//     "echoed N returned R".
//   netchan-test-peer drain --from HOST:PORT/NAME [--lease 1] -- CONFIG-ARGS...
//     receives u64 values until an error, printing "draining" once open,
//     then "got V" (or "got V redelivered") for each, then "end ok" once
//     the channel is closed and drained, or "end ERROR". With --lease 1 it
//     takes each value as a lease, prints it, then commits it ("got" is
//     printed before the commit: a death between the two leaves a value
//     printed here and delivered again, flagged, elsewhere).
//   netchan-test-peer select-drain --from HOST:PORT/NAME... [--threads K]
//                     -- CONFIG-ARGS...
//     opens every channel named (u64 values), prints "draining", then K
//     threads each loop on a select receiving from all of them until each
//     has fired `closed`, printing "got I V" for value V from the I-th
//     channel (0-based); at the end "end ok", or "end ERROR" if a select
//     failed otherwise.
//
// TYPE is one of: int, u64, str, job.
//
// NETCHAN_TEST_DIE_AT=POINT:K / NETCHAN_TEST_STOP_AT=POINT:K in its
// environment kill or freeze it at a protocol point (tests/die_at.hpp).

#include <atomic>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>

#include "die_at.hpp"
#include "job.hpp"
#include "select_loop.hpp"
#include "netchan/netchan.hpp"

namespace {

struct peer_config : netchan::config {
  peer_config() {
    test::add_test_types(*this);
  }
};

void wait_for_stdin_eof() {
  std::string line;
  while (std::getline(std::cin, line)) {
    // nothing: the test closes our stdin when it is done
  }
}

template <class T>
caf::error host(netchan::node& n, const std::string& name, size_t cap) {
  auto ch = n.create<T>(name, cap);
  return ch ? caf::error{} : ch.error();
}

int fail(const std::string& what) {
  std::cout << "error: " << what << std::endl;
  return 1;
}

/// K threads, each sending its share; strings of `size` bytes if size > 0.
template <class T, class Make>
int stream_with(netchan::node& n, const std::string& target, uint64_t count,
                size_t threads, Make make) {
  auto ch = n.open<T>(target);
  if (!ch)
    return fail(netchan::to_string(ch.error()));
  std::vector<std::thread> senders;
  std::vector<std::string> errors(threads);
  std::atomic<uint64_t> sent{0};
  for (size_t t = 0; t < threads; ++t)
    senders.emplace_back([&, t, tx = ch->first] {
      for (uint64_t i = 1; i <= count / threads; ++i) {
        if (auto err = tx.send(make(t, i))) {
          errors[t] = "thread " + std::to_string(t) + " at "
                      + std::to_string(i) + ": " + netchan::to_string(err);
          return;
        }
        if (sent.fetch_add(1) == 0)
          std::cout << "streaming" << std::endl;
      }
    });
  for (auto& t : senders)
    t.join();
  for (auto& e : errors)
    if (!e.empty())
      return fail(e);
  std::cout << "sent " << sent.load() << std::endl;
  return 0;
}

int select_drain(netchan::node& n, const std::vector<std::string>& sources,
                 size_t threads) {
  std::vector<netchan::receiver<uint64_t>> rxs;
  for (auto& where : sources) {
    auto ch = n.open<uint64_t>(where);
    if (!ch)
      return fail(netchan::to_string(ch.error()));
    rxs.push_back(ch->second);
  }
  std::cout << "draining" << std::endl;
  std::mutex out;
  std::vector<std::string> errors(threads);
  std::vector<std::thread> selectors;
  for (size_t t = 0; t < threads; ++t)
    selectors.emplace_back([&, t] {
      errors[t] = test::select_until_closed(rxs, [&](size_t i, uint64_t v) {
        std::lock_guard<std::mutex> guard{out};
        std::cout << "got " << i << ' ' << v << std::endl;
      });
    });
  for (auto& t : selectors)
    t.join();
  for (auto& e : errors)
    if (!e.empty()) {
      std::cout << "end " << e << std::endl;
      return 1;
    }
  std::cout << "end ok" << std::endl;
  return 0;
}

int stream_parallel(netchan::node& n, const std::string& target,
                    uint64_t count, size_t threads, size_t size) {
  if (size > 0)
    return stream_with<std::string>(n, target, count, threads,
                                    [size](size_t, uint64_t) {
                                      return std::string(size, 'x');
                                    });
  return stream_with<uint64_t>(n, target, count, threads,
                               [](size_t t, uint64_t i) {
                                 return (uint64_t{t} << 32) | i;
                               });
}

} // namespace

int main(int argc, char** argv) {
  test::install_die_at();
  std::vector<std::string> own;
  std::vector<std::string> config_args;
  bool after_dashes = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (!after_dashes && a == "--")
      after_dashes = true;
    else
      (after_dashes ? config_args : own).push_back(a);
  }
  if (own.empty())
    return fail("usage: see tests/peer.cpp");
  peer_config cfg;
  if (auto err = cfg.load(config_args))
    return fail(netchan::to_string(err));
  caf::actor_system sys{cfg};
  auto started = netchan::node::start(sys);
  if (!started)
    return fail(netchan::to_string(started.error()));
  auto n = *started;
  auto mode = own[0];
  std::string target;
  std::string echo;
  uint64_t count = 0;
  size_t threads = 1;
  uint64_t client = 0;
  size_t size = 0;
  bool leases = false;
  std::optional<size_t> capacity;
  bool read = true;
  std::vector<std::string> channels;
  std::vector<std::string> sources;
  for (size_t i = 1; i + 1 < own.size(); i += 2) {
    if (own[i] == "--from")
      sources.push_back(own[i + 1]);
    if (own[i] == "--channel")
      channels.push_back(own[i + 1]);
    else if (own[i] == "--echo")
      echo = own[i + 1];
    else if (own[i] == "--to" || own[i] == "--from")
      target = own[i + 1];
    else if (own[i] == "--count")
      count = std::stoull(own[i + 1]);
    else if (own[i] == "--lease")
      leases = own[i + 1] == "1";
    else if (own[i] == "--id")
      client = std::stoull(own[i + 1]);
    else if (own[i] == "--threads")
      threads = std::stoul(own[i + 1]);
    else if (own[i] == "--size")
      size = std::stoul(own[i + 1]);
    else if (own[i] == "--capacity")
      capacity = std::stoul(own[i + 1]);
    else if (own[i] == "--read")
      read = own[i + 1] != "0";
  }
  int rc = 0;
  if (mode == "serve") {
    for (auto& spec : channels) {
      auto c1 = spec.find(':');
      auto c2 = spec.rfind(':');
      auto name = spec.substr(0, c1);
      auto type = spec.substr(c1 + 1, c2 - c1 - 1);
      auto cap = std::stoul(spec.substr(c2 + 1));
      caf::error err;
      if (type == "int")
        err = host<int32_t>(n, name, cap);
      else if (type == "u64")
        err = host<uint64_t>(n, name, cap);
      else if (type == "str")
        err = host<std::string>(n, name, cap);
      else if (type == "job")
        err = host<test::job>(n, name, cap);
      else
        return fail("unknown type " + type);
      if (err)
        return fail(netchan::to_string(err));
    }
    std::thread echoer;
    if (!echo.empty()) {
      auto colon = echo.find(':');
      auto in = n.create<test::job>(echo.substr(0, colon), 1);
      auto out = n.create<test::job>(echo.substr(colon + 1), 1);
      if (!in || !out)
        return fail("echo channels");
      // Decodes and re-encodes every job: a serialization gap shows here.
      echoer = std::thread{[rx = in->second, tx = out->first] {
        for (;;) {
          auto j = rx.receive();
          if (!j || tx.send(*j))
            return; // the node shut down
        }
      }};
    }
    std::cout << "ready port=" << n.port() << std::endl;
    wait_for_stdin_eof();
    n.shutdown();
    if (echoer.joinable())
      echoer.join();
  } else if (mode == "stream" && (threads > 1 || size > 0)) {
    rc = stream_parallel(n, target, count, threads, size);
  } else if (mode == "stream" || mode == "touch") {
    auto ch = n.open<uint64_t>(target);
    if (!ch)
      return fail(netchan::to_string(ch.error()));
    auto tx = ch->first;
    if (mode == "touch") {
      if (auto err = tx.send(0))
        return fail(netchan::to_string(err));
      std::cout << "touched" << std::endl;
      wait_for_stdin_eof();
    } else {
      std::atomic<bool> stop{false};
      std::thread watcher;
      if (count == 0)
        watcher = std::thread{[&stop] {
          wait_for_stdin_eof();
          stop = true;
        }};
      uint64_t sent = 0;
      caf::error err;
      while ((count == 0 && !stop) || (count != 0 && sent < count)) {
        if ((err = tx.send(sent + 1)))
          break;
        if (++sent == 1)
          std::cout << "streaming" << std::endl;
      }
      if (watcher.joinable())
        watcher.join();
      if (err)
        return fail("at " + std::to_string(sent + 1) + ": "
                    + netchan::to_string(err));
      std::cout << "sent " << sent << std::endl;
    }
  } else if (mode == "select-drain") {
    rc = select_drain(n, sources, threads);
  } else if (mode == "drain") {
    auto ch = n.open<uint64_t>(target);
    if (!ch)
      return fail(netchan::to_string(ch.error()));
    auto rx = ch->second;
    std::cout << "draining" << std::endl;
    auto print = [](uint64_t v, bool redelivered) {
      std::cout << "got " << v << (redelivered ? " redelivered" : "")
                << std::endl;
    };
    caf::error err;
    for (;;) {
      if (leases) {
        auto l = rx.receive_lease();
        if (!l) {
          err = std::move(l.error());
          break;
        }
        print(l->value(), l->redelivered());
        if ((err = l->commit()))
          break;
      } else {
        auto v = rx.receive_flagged();
        if (!v) {
          err = std::move(v.error());
          break;
        }
        print(v->value, v->redelivered);
      }
    }
    if (netchan::is(err, netchan::errc::closed))
      std::cout << "end ok" << std::endl;
    else
      std::cout << "end " << netchan::to_string(err) << std::endl;
  } else if (mode == "dial" || mode == "echo") {
    auto d = capacity ? netchan::dial<uint64_t>(sys, target, *capacity)
                      : netchan::dial<uint64_t>(sys, target);
    if (!d)
      return fail(netchan::to_string(d.error()));
    auto fan_in = d->sending().stats();
    auto inbox = d->receiving().stats();
    if (!fan_in || !inbox)
      return fail("stats: " + netchan::to_string(fan_in ? inbox.error()
                                                         : fan_in.error()));
    std::cout << "dialed caps " << fan_in->capacity << ' ' << inbox->capacity
              << std::endl;
    if (mode == "echo") {
      uint64_t echoed = 0;
      uint64_t returned = 0;
      std::thread echoer{[&] {
        for (;;) {
          auto v = d->receive();
          if (!v)
            return; // closed below
          if (d->send(*v))
            ++returned;
          else
            ++echoed;
        }
      }};
      wait_for_stdin_eof();
      static_cast<void>(d->receiving().close());
      echoer.join();
      std::cout << "echoed " << echoed << " returned " << returned
                << std::endl;
    } else {
      for (uint64_t k = 1; k <= count; ++k)
        if (auto err = d->send((client << 32) | k))
          return fail(netchan::to_string(err));
      std::cout << "sent " << count << std::endl;
      std::thread printer;
      if (read)
        printer = std::thread{[rx = d->receiving()] {
          for (;;) {
            auto v = rx.receive();
            if (!v)
              return; // closed below
            std::cout << "got " << *v << std::endl;
          }
        }};
      wait_for_stdin_eof();
      static_cast<void>(d->receiving().close());
      if (printer.joinable())
        printer.join();
    }
  } else if (mode == "relay") {
    using handle = netchan::sender<int32_t>;
    auto mailbox = n.create<handle>("mailbox", 1);
    if (!mailbox)
      return fail(netchan::to_string(mailbox.error()));
    std::cout << "ready port=" << n.port() << std::endl;
    auto from = n.open<handle>(target);
    if (!from)
      return fail(netchan::to_string(from.error()));
    auto h = from->second.receive();
    if (!h)
      return fail(netchan::to_string(h.error()));
    if (auto err = mailbox->first.send(*h))
      return fail(netchan::to_string(err));
    std::cout << "relayed" << std::endl;
    wait_for_stdin_eof();
  } else if (mode == "use") {
    auto from = n.open<netchan::sender<int32_t>>(target);
    if (!from)
      return fail(netchan::to_string(from.error()));
    auto h = from->second.receive();
    if (!h)
      return fail(netchan::to_string(h.error()));
    std::cout << "got handle" << std::endl;
    std::string line;
    while (std::getline(std::cin, line) && line != "go") {
    }
    if (auto err = h->send(42))
      return fail(netchan::to_string(err));
    std::cout << "used" << std::endl;
  } else {
    rc = fail("unknown mode " + mode);
  }
  return rc;
}
