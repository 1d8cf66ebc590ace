#pragma once

// What every fuzz target shares. A target is one file that defines
// LLVMFuzzerTestOneInput (libFuzzer's entry point) and `seeds()`: the
// hand-made inputs that start its corpus (`--write-seeds` of the replay
// driver writes them out).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "netchan/errc.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace netchan::fuzz {

/// A named input for the corpus.
struct seed {
  std::string name;
  std::string bytes;
};

/// The target's hand-made inputs: valid ones, and near misses.
std::vector<seed> seeds();

/// Stops the process on a broken invariant: libFuzzer saves the input, the
/// replay test fails.
[[noreturn]] inline void violated(const std::string& what) {
  std::fprintf(stderr, "netchan fuzz: invariant violated: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

inline void require(bool ok, const std::string& what) {
  if (!ok)
    violated(what);
}

/// A refusal must be netchan's `code`, with a sentence to show the user.
inline void require_refusal(const caf::error& err, errc code,
                            const char* where) {
  require(static_cast<bool>(err), std::string{where} + ": empty error");
  require(is(err, code), std::string{where} + ": expected errc::"
                           + to_string(code) + ", got "
                           + netchan::to_string(err));
  require(!netchan::to_string(err).empty(),
          std::string{where} + ": error without a sentence");
}

} // namespace netchan::fuzz
