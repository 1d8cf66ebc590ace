#pragma once

// Deaths at exact protocol points, for the fault tests.
//
//   NETCHAN_TEST_DIE_AT=POINT:K    (or NETCHAN_TEST_STOP_AT=POINT:K)
//
// makes the process kill itself with SIGKILL (or freeze itself with
// SIGSTOP) the K-th time it reaches POINT; a line "netchan: test hook:
// dying at POINT:K" (or "stopping at") goes to stderr first.
// Points:
//   receive          a thread calls receive (any kind), before anything is
//                    taken: the calls before it have returned their values
//   holding-lease    receive_lease is about to hand a lease to its caller
//   sent             a send has completed and is about to return
//   owner-accepted   a channel actor has made a sender's value its own
//                    (buffered, or matched with a receiver at capacity 0)
//   owner-handed     a channel actor has handed a value to a receiver
// Without the variable a pass costs one check of an empty string.

namespace netchan::detail::test_hook {

/// Counts a pass through `point`; dies here if it is the chosen one.
void reached(const char* point);

} // namespace netchan::detail::test_hook
