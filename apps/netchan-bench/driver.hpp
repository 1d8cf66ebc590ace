#pragma once

// The driver: runs every scenario, starting the other processes (this same
// binary in child roles) and being one of the parties itself where a
// scenario says so.

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "bench.hpp"
#include "certs.hpp"
#include "netchan/netchan.hpp"
#include "process.hpp"

namespace bench {

class driver {
public:
  driver(options opt, std::string self_path);
  ~driver();

  /// Makes the PKI and starts this process's actor system and node.
  [[nodiscard]] caf::error start();

  /// Runs the scenarios `opt.only` selects (all by default), in order.
  void run();

  report& result() {
    return report_;
  }

private:
  bool wanted(const std::string& group) const;

  /// A child in `role`; `args` are its options, its configuration follows.
  std::unique_ptr<test::child> spawn(const std::string& role,
                                     std::vector<std::string> args,
                                     bool listens = false);

  /// Reads a child's last line (its peak memory), waits for its exit and
  /// records it in `r` as `who`.
  void finish(test::child& c, const std::string& who, row& r);

  /// This process's peak since the scenario began, recorded in `r`.
  void finish_self(const std::string& who, row& r);

  void fail(row& r, const std::string& what, test::child* c = nullptr);

  // -- scenarios ----------------------------------------------------------------

  void tls_floor();
  void raw_one_way(size_t senders);
  void raw_request_response(size_t requesters);
  void echo();
  void stream(size_t capacity, size_t senders);
  void rendezvous(bool owner_apart, size_t pairs);
  void stalled_receiver();
  void scale(size_t channels);

  void compare();

  options opt_;
  std::string self_path_;
  ::pki::temp_dir dir_;
  std::optional<test::pki> pki_;
  test::node_certs mine_;
  test::node_certs theirs_;
  netchan::config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::optional<netchan::node> node_;
  caf::actor raw_sink_;
  std::string raw_address_;
  std::shared_ptr<std::atomic<uint64_t>> raw_received_;
  report report_;
};

} // namespace bench
