// netchan-example: channels between threads, inside an actor, and between two
// nodes over mutual TLS. The cluster demo (apps/netchan-node) will replace it
// as the README's main job; until then this is what `./dev demo` runs.
//
//   netchan-example [--certs DIR] [CAF and netchan options...]
//
// DIR holds the dev PKI of config/make-dev-certs.sh (ca.pem, hub.pem,
// worker-1.pem and their keys); without it the two-node part is skipped.

#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "netchan/netchan.hpp"

namespace {

/// An actor's receive loop: each value arrives as a message, so the actor's
/// thread is never blocked while it waits.
void sum_until_closed(caf::event_based_actor* self, netchan::receiver<int> rx,
                      int sum) {
  netchan::async_receive(self, rx, [=](caf::expected<int> x) {
    if (x) {
      sum_until_closed(self, rx, sum + *x);
      return;
    }
    std::cout << "actor summed " << sum << " ("
              << netchan::to_string(x.error()) << ")\n";
    self->quit();
  });
}

int local_channels(caf::actor_system& sys) {
  // An unbuffered channel: each send completes when a receiver took it.
  auto chan = netchan::make_channel<std::string>(sys, 0, "greetings");
  if (!chan) {
    std::cerr << netchan::to_string(chan.error()) << '\n';
    return 1;
  }
  auto [tx, rx] = *chan;
  std::thread producer{[tx = tx] {
    for (int i = 1; i <= 3; ++i)
      if (auto err = tx.send("hello #" + std::to_string(i)))
        std::cerr << netchan::to_string(err) << '\n';
    static_cast<void>(tx.close());
  }};
  for (auto& greeting : rx)
    std::cout << "thread received: " << greeting << '\n';
  producer.join();

  // An actor receives without blocking its thread.
  auto numbers = netchan::make_channel<int>(sys, 4, "numbers");
  auto [ntx, nrx] = *numbers;
  auto summer = sys.spawn([rx = nrx](caf::event_based_actor* self) {
    sum_until_closed(self, rx, 0);
  });
  for (int i = 1; i <= 10; ++i)
    static_cast<void>(ntx.send(i));
  static_cast<void>(ntx.close());
  caf::scoped_actor waiter{sys};
  waiter->wait_for(summer);
  return 0;
}

/// A node's configuration: the shared options plus its own certificate.
caf::error load(netchan::config& cfg, std::vector<std::string> args,
                const std::string& certs, const std::string& name) {
  args.push_back("--netchan.name=" + name);
  args.push_back("--openssl.certificate=" + certs + "/" + name + ".pem");
  args.push_back("--openssl.key=" + certs + "/" + name + "-key.pem");
  args.push_back("--openssl.cafile=" + certs + "/ca.pem");
  return cfg.load(std::move(args));
}

int two_nodes(const std::vector<std::string>& args, const std::string& certs) {
  netchan::config hub_cfg;
  netchan::config worker_cfg;
  auto hub_args = args;
  hub_args.push_back("--netchan.listen=127.0.0.1:0");
  if (auto err = load(hub_cfg, hub_args, certs, "hub"))
    return std::cerr << netchan::to_string(err) << '\n', 2;
  if (auto err = load(worker_cfg, args, certs, "worker-1"))
    return std::cerr << netchan::to_string(err) << '\n', 2;
  caf::actor_system hub_sys{hub_cfg};
  caf::actor_system worker_sys{worker_cfg};
  auto hub = netchan::node::start(hub_sys);
  auto worker = netchan::node::start(worker_sys);
  if (!hub || !worker) {
    std::cerr << netchan::to_string(!hub ? hub.error() : worker.error())
              << '\n';
    return 1;
  }
  // The hub hosts "jobs", a rendezvous channel; the worker opens it by
  // address, over mutual TLS, and takes what the hub sends.
  auto jobs = hub->create<std::string>("jobs", 0);
  auto where = hub->address() + "/jobs";
  auto remote = worker->open<std::string>(where);
  if (!jobs || !remote) {
    std::cerr << netchan::to_string(!jobs ? jobs.error() : remote.error())
              << '\n';
    return 1;
  }
  std::cout << "worker opened " << where << " (TLS)\n";
  std::thread hub_thread{[tx = jobs->first] {
    for (auto job : {"count primes below 1000", "hash a block"})
      if (auto err = tx.send(job)) // returns when the worker has taken it
        std::cerr << netchan::to_string(err) << '\n';
    static_cast<void>(tx.close());
  }};
  for (auto& job : remote->second)
    std::cout << "worker received over TLS: " << job << '\n';
  hub_thread.join();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args;
  std::string certs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--certs" && i + 1 < argc)
      certs = argv[++i];
    else
      args.push_back(std::move(a));
  }
  netchan::config cfg;
  if (auto err = cfg.load(args)) {
    std::cerr << netchan::to_string(err) << '\n';
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  std::cout << "configuration: " << cfg.source() << '\n';
  {
    caf::actor_system sys{cfg};
    if (auto rc = local_channels(sys))
      return rc;
  }
  if (certs.empty()) {
    std::cout << "no --certs DIR: skipping the two-node part\n";
    return 0;
  }
  return two_nodes(args, certs);
}
