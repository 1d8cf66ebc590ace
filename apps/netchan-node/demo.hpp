#pragma once

// The cluster demo's work: a job is a proof-of-work puzzle, expensive to
// solve and cheap to check, so the producer verifies every result itself.
// Solve: find a nonce such that SHA-256(id, seed, nonce) starts with
// `difficulty` zero bits (about 2^difficulty hashes).

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

namespace demo {

struct job {
  uint64_t id = 0;
  uint64_t seed = 0;
  uint32_t difficulty = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job& x) {
  return f(caf::meta::type_name("demo::job"), x.id, x.seed, x.difficulty);
}

struct result {
  uint64_t job = 0;
  uint64_t nonce = 0;
  /// netchan.name of the worker that solved it.
  std::string worker;
  /// The worker got the job as a redelivered lease: an earlier worker took
  /// it and died before committing.
  bool redelivered = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, result& x) {
  return f(caf::meta::type_name("demo::result"), x.job, x.nonce, x.worker,
           x.redelivered);
}

/// Whether `nonce` solves `j`.
bool solves(const job& j, uint64_t nonce);

/// The first nonce that solves `j`.
uint64_t solve(const job& j);

} // namespace demo
