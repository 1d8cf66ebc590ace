#include <iostream>

#include <caf/actor_system.hpp>

#include <netchan/netchan.hpp>

int main() {
  netchan::config cfg;
  if (auto err = cfg.load({})) {
    std::cerr << netchan::to_string(err) << '\n';
    return 1;
  }
  caf::actor_system sys{cfg};
  auto ch = netchan::make_channel<int>(sys, 1);
  if (!ch)
    return 1;
  auto [tx, rx] = *ch;
  if (auto err = tx.send(42))
    return 1;
  auto x = rx.receive();
  if (!x || *x != 42)
    return 1;
  std::cout << "consumer received " << *x << '\n';
  return 0;
}
