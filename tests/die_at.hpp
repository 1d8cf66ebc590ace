#pragma once

namespace test {

/// Installs the library's test hook (libnetchan/src/hook/test_hook.hpp) as
/// NETCHAN_TEST_DIE_AT=POINT:K (SIGKILL) or NETCHAN_TEST_STOP_AT=POINT:K
/// (SIGSTOP) say: the process kills or freezes itself the K-th time it
/// passes POINT, after a line "netchan: test hook: dying at POINT:K" (or
/// "stopping at") on stderr. Without either variable it installs nothing.
void install_die_at();

} // namespace test
