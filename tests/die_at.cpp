#include "die_at.hpp"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <string>

#include <unistd.h>

#include "hook/test_hook.hpp"

namespace test {

namespace {

struct target {
  std::string point;
  long k = 0;
  int signal = SIGKILL;
  std::atomic<long> count{0};
};

target the_target;

void act(const char* point) {
  auto& t = the_target;
  if (t.point != point)
    return;
  if (t.count.fetch_add(1) + 1 != t.k)
    return;
  auto line = std::string{"netchan: test hook: "}
              + (t.signal == SIGKILL ? "dying" : "stopping") + " at "
              + t.point + ":" + std::to_string(t.k) + "\n";
  static_cast<void>(::write(STDERR_FILENO, line.data(), line.size()));
  ::kill(::getpid(), t.signal);
}

} // namespace

void install_die_at() {
  auto spec = std::getenv("NETCHAN_TEST_DIE_AT");
  if (spec == nullptr) {
    spec = std::getenv("NETCHAN_TEST_STOP_AT");
    the_target.signal = SIGSTOP;
  }
  if (spec == nullptr)
    return;
  std::string s = spec;
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return;
  the_target.k = std::atol(s.c_str() + colon + 1);
  if (the_target.k <= 0)
    return;
  the_target.point = s.substr(0, colon);
  netchan::detail::test_hook::install(&act);
}

} // namespace test
