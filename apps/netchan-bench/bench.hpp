#pragma once

// What the parts of netchan-bench share: options, result rows, the child
// roles' entry points, and small measuring helpers.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

#include <caf/atom.hpp>

namespace bench {

using clock_type = std::chrono::steady_clock;

// -- options ------------------------------------------------------------------

struct options {
  /// Measured seconds per scenario.
  double seconds = 3.0;
  bool json = false;
  /// Only scenarios whose group is listed ("echo", "stream", ...); all if
  /// empty.
  std::vector<std::string> only;
  /// Clients of the echo scenario.
  size_t clients = 9;
  /// Child process: its role, where it connects, its threads.
  std::string role;
  std::string to;
  size_t threads = 1;
  /// Values a stream-sender thread sends, or a receiver takes, before it
  /// ends on its own (0: until the channel closes). For profiling.
  uint64_t count = 0;
  /// Configuration arguments (certificates, overrides) for a child; extra
  /// overrides given to the driver after `--`, passed on to every process.
  std::vector<std::string> config_args;
};

// -- results ------------------------------------------------------------------

/// Memory of one process of a scenario.
struct process_memory {
  std::string who;
  uint64_t peak_kb = 0;  ///< VmHWM: peak resident set
  uint64_t start_kb = 0; ///< VmRSS when a stall began (stalled row only)
  uint64_t end_kb = 0;   ///< VmRSS when the stall ended (stalled row only)
};

struct row {
  std::string id;       ///< short and unique: baselines are named by it
  std::string group;    ///< "baseline", "echo", "stream", ...
  std::string scenario;
  std::string detail;
  double per_second = -1;
  double median_us = -1;
  double p99_us = -1;
  double max_us = -1;
  /// Values handed to the sending side, delivered to a receiving
  /// application, and returned to their sender with an error.
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t returned = 0;
  bool accounted = true; ///< whether sent = received + returned must hold
  std::string baseline;  ///< id of the row this one is compared with
  double ratio = -1;     ///< per_second over the baseline's
  double latency_ratio = -1; ///< median over the baseline's
  std::vector<process_memory> memory;
  /// scale rows: resident KiB each hosted or opened channel adds.
  double kib_each = -1;
  std::string note;      ///< why a row has no result, if it has none

  bool balanced() const {
    return !accounted || sent == received + returned;
  }
};

/// The echo scenario in the Go library's words.
struct go_echo_report {
  bool present = false;
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t processed = 0;
  uint64_t not_received = 0;
  uint64_t clients = 0;
  double seconds = 0;
};

/// A target of issue 9, judged on ratios of the same run.
struct target {
  std::string what;
  double value = -1; ///< the measured ratio (or MiB), -1 if not measured
  double limit = 0;
  bool at_least = true; ///< value >= limit (else value <= limit)
  bool met = false;
};

struct report {
  std::vector<row> rows;
  std::vector<target> targets;
  go_echo_report echo;
  std::string load_before;
  std::string load_after;
  std::string machine;
  double total_seconds = 0;
};

/// The table (or JSON with `json`) on stdout.
void print(const report& r, const options& opt);

// -- the child roles ----------------------------------------------------------

/// Runs the child role `opt.role`; returns the exit status.
int run_role(const options& opt);

/// The plain OpenSSL TLS 1.3 echo server (a child role without CAF).
int run_tls_echo(const options& opt);

/// Connects to the TLS echo server at `port` and ping-pongs `size`-byte
/// messages for `seconds`; fills per_second, median, p99, max and counts.
void tls_ping(uint16_t port, const std::vector<std::string>& cert_args,
              double seconds, size_t size, row& r);

// -- helpers ------------------------------------------------------------------

inline double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

inline double micros_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0)
    .count();
}

/// Every thread's latencies in one vector.
inline std::vector<double>
merged(const std::vector<std::vector<double>>& per_thread) {
  std::vector<double> all;
  for (auto& xs : per_thread)
    all.insert(all.end(), xs.begin(), xs.end());
  return all;
}

/// The `p` quantile (0..1) of `xs` (sorted in place); -1 if empty.
double percentile(std::vector<double>& xs, double p);

/// A field of /proc/PID/status in kB ("VmHWM", "VmRSS"); 0 if unknown.
uint64_t status_kb(pid_t pid, const char* field);

/// Resets this process's peak resident set (VmHWM) to its current size.
void reset_peak();

/// The line a child prints last: its peak resident set.
void print_peak();

/// The value of `--name=value` among `args`, or "".
std::string arg_value(const std::vector<std::string>& args,
                      const std::string& name);

// -- raw CAF messages ---------------------------------------------------------

using raw_ping_atom = caf::atom_constant<caf::atom("b_ping")>;
using raw_data_atom = caf::atom_constant<caf::atom("b_data")>;
using raw_ack_atom = caf::atom_constant<caf::atom("b_ack")>;

/// Values a raw one-way source may have in flight (all its threads
/// together), and how often the sink acknowledges.
constexpr uint64_t raw_window = 10000;
constexpr uint64_t raw_ack_every = 500;

} // namespace bench
