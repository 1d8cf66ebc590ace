#pragma once

// Named points of the protocol where a test may act, for the fault tests:
//   receive          a thread calls receive (any kind), before anything is
//                    taken: the calls before it have returned their values
//   holding-lease    receive_lease is about to hand a lease to its caller
//   sent             a send has completed and is about to return
//   owner-accepted   a channel actor has made a sender's value its own
//                    (buffered, or matched with a receiver at capacity 0)
//   owner-handed     a channel actor has handed a value to a receiver
//
// The library only names the points. Nothing happens at them unless the
// library is built with NETCHAN_TEST_HOOKS (CMake turns it on with
// NETCHAN_BUILD_TESTS) and a test process installs a hook:
// netchan-test-peer does (tests/die_at.cpp, driven by
// NETCHAN_TEST_DIE_AT=POINT:K or NETCHAN_TEST_STOP_AT=POINT:K, which kill or
// freeze the process the K-th time it passes POINT). Without it `reached` is
// an empty inline function and `install` does not exist: a library built
// without tests has no hook at all. With it, the library still reads no
// environment variable; a pass costs one load of a null pointer.

namespace netchan::detail::test_hook {

#ifdef NETCHAN_TEST_HOOKS

/// What runs at every point once installed.
using hook = void (*)(const char* point);

/// Installs `h` for every later pass (null: none). Test processes only.
void install(hook h) noexcept;

/// A pass through `point`: calls the installed hook, if any.
void reached(const char* point) noexcept;

#else

/// A pass through `point`: nothing (no test hooks in this build).
inline void reached(const char*) noexcept {
}

#endif

} // namespace netchan::detail::test_hook
