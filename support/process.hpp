#pragma once

// Child processes for multi-process tests: spawn, read their stdout line by
// line with deadlines, kill. No sleeps: every wait is for an event (a line,
// an exit) with a deadline.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace test {

class child {
public:
  /// Starts `program` with `args` and this process's environment plus
  /// `env` ("NAME=VALUE" each); its stdout is a pipe read by `read_line`,
  /// its stdin a pipe closed by `close_stdin` (the peers exit on EOF).
  /// With `with_stderr`, the child's stderr goes to the same pipe.
  child(const std::string& program, const std::vector<std::string>& args,
        const std::vector<std::string>& env = {}, bool with_stderr = false);
  ~child();

  child(const child&) = delete;
  child& operator=(const child&) = delete;

  /// The next line of output, or nothing if none arrived before `timeout` or
  /// the child closed its output.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);

  /// Reads lines until one starts with `prefix`; returns the rest of it.
  std::optional<std::string> wait_for(const std::string& prefix,
                                      std::chrono::milliseconds timeout);

  /// Whether the child closed its output (it exited, or is about to).
  bool output_closed() const {
    return out_ < 0;
  }

  /// Writes `line` and a newline to the child's stdin.
  void write_line(const std::string& line);

  /// Asks the child to finish (closes its stdin).
  void close_stdin();

  /// SIGKILL, no goodbye.
  void kill();

  /// The exit status if the child has exited (see `wait`), without waiting.
  std::optional<int> try_wait();

  /// Waits for the exit; returns the exit status, or -1 after `timeout`
  /// (then the child is killed), or 128+signal if a signal ended it.
  int wait(std::chrono::milliseconds timeout);

  pid_t pid() const {
    return pid_;
  }

  /// Everything the child printed so far (for failure messages).
  const std::string& transcript() const {
    return transcript_;
  }

private:
  pid_t pid_ = -1;
  int out_ = -1;
  int in_ = -1;
  std::string buffer_;
  std::string transcript_;
  bool exited_ = false;
  int status_ = 0;
};

/// A TCP socket listening on 127.0.0.1 at a free port: (fd, port). Throws
/// std::runtime_error if the system refuses.
std::pair<int, uint16_t> listening_socket();

/// A memory figure of process `pid` from /proc/PID/status, in KiB:
/// "VmRSS:" (resident now) or "VmHWM:" (peak resident); 0 if unknown.
uint64_t memory_kib(pid_t pid, const std::string& field);

} // namespace test
