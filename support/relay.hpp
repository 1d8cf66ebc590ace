#pragma once

// A TCP relay for fault-injection tests: nodes dial each other through it,
// and the test cuts, stalls, redirects or refuses their links on command.
//
// One background thread polls every socket. Every command returns after that
// thread has applied it, so nothing is forwarded under the old rules once a
// command has returned, and counters read afterwards include everything the
// relay did before the command.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace test {

class relay {
public:
  // -- constructors, destructors ----------------------------------------------

  /// Listens on 127.0.0.1 at a free port; every accepted connection gets its
  /// own connection to `target_host`:`target_port` (a client whose target
  /// refuses is reset). Throws std::runtime_error if the target does not
  /// resolve or the system refuses a socket.
  explicit relay(std::string target_host, uint16_t target_port);

  /// Stops the relay thread and closes every connection (a FIN, unless the
  /// kernel resets a socket with unread bytes).
  ~relay();

  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  // -- properties -------------------------------------------------------------

  /// The port clients dial on 127.0.0.1.
  uint16_t port() const {
    return port_;
  }

  /// Client connections accepted, refused ones included.
  size_t accepted() const {
    return accepted_;
  }

  /// Connection pairs whose outgoing connection is established and open.
  size_t active() const;

  /// Connection pairs reset on purpose, by `cut` or `cut_handshakes`.
  size_t cuts() const {
    return cuts_;
  }

  /// Bytes forwarded, both directions, all connections.
  uint64_t bytes() const {
    return bytes_;
  }

  // -- commands ---------------------------------------------------------------

  /// Resets (RST) both sides of every current connection pair; new
  /// connections are still accepted.
  void cut();

  /// While on, nothing is forwarded in either direction: connections stay
  /// open, bytes stay buffered or unread.
  void stall(bool on);

  /// Connections accepted from now on go to `host`:`port`; existing pairs
  /// keep theirs. Throws std::runtime_error if `host` does not resolve.
  void retarget(std::string host, uint16_t port);

  /// Resets the next `connections` accepted pairs as soon as `after_bytes`
  /// bytes (both directions) went through each, and not one byte more: cuts
  /// a TLS handshake midway. With 0, right after the outgoing connection is
  /// established.
  void cut_handshakes(size_t connections, size_t after_bytes);

  /// While on, new client connections are accepted and reset at once; the
  /// target is not contacted.
  void refuse(bool on);

  // -- waiting ----------------------------------------------------------------

  /// Waits until at least `n` pairs are active; false after `deadline`.
  [[nodiscard]] bool wait_active(size_t n, std::chrono::milliseconds deadline);

private:
  struct flow;
  struct link;
  struct state;

  // -- relay thread -----------------------------------------------------------

  void run();
  void watch(link& l);
  void serve(link& l);
  void pump(link& l);
  bool drain(link& l, int to, flow& from);
  void connected(link& l);
  void accept_all();
  void run_commands();
  void count_active(long delta);

  enum class ending { graceful, abortive, cut };
  void finish(link& l, ending how);

  // -- callers ----------------------------------------------------------------

  /// Runs `command` on the relay thread and waits for it.
  void apply(std::function<void()> command);
  void wake();

  int listener_ = -1;
  int wake_ = -1;
  uint16_t port_ = 0;

  /// Owned by the relay thread once it runs.
  std::unique_ptr<state> state_;

  std::atomic<bool> stop_{false};
  std::atomic<size_t> accepted_{0};
  std::atomic<size_t> cuts_{0};
  std::atomic<uint64_t> bytes_{0};

  /// Guards `active_` and `commands_`.
  mutable std::mutex mtx_;
  std::condition_variable active_changed_;
  size_t active_ = 0;
  std::deque<std::packaged_task<void()>> commands_;

  std::thread thread_;
};

} // namespace test
