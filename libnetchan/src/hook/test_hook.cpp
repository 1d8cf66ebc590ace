#include "hook/test_hook.hpp"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <unistd.h>

namespace netchan::detail::test_hook {

namespace {

struct target {
  std::string point;
  long k = 0;
  int signal = SIGKILL;
  std::atomic<long> count{0};

  target() {
    auto spec = std::getenv("NETCHAN_TEST_DIE_AT");
    if (spec == nullptr) {
      spec = std::getenv("NETCHAN_TEST_STOP_AT");
      signal = SIGSTOP;
    }
    if (spec == nullptr)
      return;
    std::string s = spec;
    auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0)
      return;
    k = std::atol(s.c_str() + colon + 1);
    if (k > 0)
      point = s.substr(0, colon);
  }
};

target& the_target() {
  static target t;
  return t;
}

} // namespace

void reached(const char* point) {
  auto& t = the_target();
  if (t.point.empty() || t.point != point)
    return;
  if (t.count.fetch_add(1) + 1 != t.k)
    return;
  auto line = std::string{"netchan: test hook: "}
              + (t.signal == SIGKILL ? "dying" : "stopping") + " at "
              + t.point + ":" + std::to_string(t.k) + "\n";
  static_cast<void>(::write(STDERR_FILENO, line.data(), line.size()));
  ::kill(::getpid(), t.signal);
}

} // namespace netchan::detail::test_hook
