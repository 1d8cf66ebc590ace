// netchan-example: a channel used from plain threads and from an actor.
// The cluster demo (apps/netchan-node) will replace it as the README's main
// job; until then this is what `./dev demo` runs.

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

} // namespace

int main(int argc, char** argv) {
  netchan::config cfg;
  if (auto err = cfg.load(argc, argv)) {
    std::cerr << netchan::to_string(err) << '\n';
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  caf::actor_system sys{cfg};
  std::cout << "configuration: " << cfg.source() << '\n';
  {
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
  }
  return 0;
}
