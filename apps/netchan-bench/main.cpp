// netchan-bench: what netchan delivers between processes over TLS on
// 127.0.0.1, beside what the layers under it do alone: raw CAF remote actors
// over the same TLS middleman, and a ping-pong written directly against
// OpenSSL (the floor).
//
//   netchan-bench [--seconds S] [--json] [--only GROUP]... [--clients N]
//                 [-- CAF/netchan overrides for every process]
//
// Groups, in the order they run: baseline, echo, stream, rendezvous,
// stalled. Every row counts values where the receiving application got
// them and checks the books (sent = received + returned); the exit status
// is 1 if any row does not balance or failed. The bench starts its other
// processes itself (this binary, --role ...) with a throw-away PKI; nothing
// to set up.

#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include <unistd.h>

#include "bench.hpp"
#include "driver.hpp"

namespace {

std::string first_line(const char* path) {
  std::ifstream in{path};
  std::string line;
  std::getline(in, line);
  return line;
}

std::string machine() {
  std::ifstream in{"/proc/cpuinfo"};
  std::string line;
  std::string model = "unknown CPU";
  while (std::getline(in, line))
    if (line.compare(0, 10, "model name") == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  return model + ", " + std::to_string(std::thread::hardware_concurrency())
         + " cores";
}

int usage() {
  std::cerr << "usage: netchan-bench [--seconds S] [--json] [--only GROUP]... "
               "[--clients N] [-- CONFIG-OVERRIDES...]\n"
               "  GROUP: baseline, echo, stream, rendezvous, stalled, scale\n";
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  bench::options opt;
  bool rest = false;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc)
          throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (rest)
        opt.config_args.push_back(a);
      else if (a == "--")
        rest = true;
      else if (a == "--seconds")
        opt.seconds = std::stod(next());
      else if (a == "--json")
        opt.json = true;
      else if (a == "--only")
        opt.only.push_back(next());
      else if (a == "--clients")
        opt.clients = std::stoul(next());
      else if (a == "--role")
        opt.role = next();
      else if (a == "--to")
        opt.to = next();
      else if (a == "--threads")
        opt.threads = std::stoul(next());
      else if (a == "--count")
        opt.count = std::stoull(next());
      else
        return usage();
    }
  } catch (const std::exception& e) {
    std::cerr << "netchan-bench: " << e.what() << '\n';
    return usage();
  }
  if (opt.seconds <= 0 || opt.clients == 0)
    return usage();
  if (!opt.role.empty())
    return bench::run_role(opt);
  std::string self = "/proc/self/exe";
  {
    char buf[4096];
    auto len = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (len > 0)
      self.assign(buf, static_cast<size_t>(len));
  }
  auto t0 = bench::clock_type::now();
  bench::report rep;
  {
    bench::driver d{opt, self};
    d.result().load_before = first_line("/proc/loadavg");
    if (auto err = d.start()) {
      std::cerr << "netchan-bench: " << netchan::to_string(err) << '\n';
      return 1;
    }
    d.run();
    rep = std::move(d.result());
  }
  rep.load_after = first_line("/proc/loadavg");
  rep.machine = machine();
  rep.total_seconds = bench::seconds_since(t0);
  bench::print(rep, opt);
  for (auto& r : rep.rows)
    if (!r.balanced() || !r.note.empty())
      return 1;
  return 0;
}
