// Compiled only with NETCHAN_TEST_HOOKS (libnetchan/CMakeLists.txt).
#include "hook/test_hook.hpp"

#include <atomic>

namespace netchan::detail::test_hook {

namespace {

std::atomic<hook> installed{nullptr};

} // namespace

void install(hook h) noexcept {
  installed.store(h);
}

void reached(const char* point) noexcept {
  if (auto h = installed.load(std::memory_order_relaxed))
    h(point);
}

} // namespace netchan::detail::test_hook
