#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/fwd.hpp>
#include <caf/error.hpp>
#include <caf/timespan.hpp>

namespace netchan {

/// The default of `netchan.max-message-size`: 16 MiB.
constexpr size_t default_max_message_size = 16u * 1024u * 1024u;

/// `netchan.max-message-size` of `sys`, or its default if `sys` was not
/// made from a netchan::config. @private
size_t max_message_size_of(const caf::actor_system& sys);

/// Registers netchan's message types and error category with a CAF
/// configuration. `netchan::config` does this itself; call it only for an
/// `actor_system_config` of your own (for example one on CAF's
/// test_coordinator, which must stay free of the network modules).
void add_netchan_types(caf::actor_system_config& cfg);

/// The configuration of every netchan program: CAF's own options, the
/// middleman and OpenSSL modules (loaded in the order CAF 0.17 requires), and
/// the `[netchan]` section. Read it with `load`, which type-checks every key
/// netchan relies on, where CAF 0.17 silently ignores a value of the wrong
/// type.
class config : public caf::actor_system_config {
public:
  /// The file read when the command line names none.
  static constexpr const char* default_file = "caf-application.conf";

  config();

  /// Parses `argv` and the configuration file: `--config-file=FILE` if given
  /// (it must exist), else `caf-application.conf` in the working directory if
  /// present, else the built-in defaults (the shipped caf-application.conf).
  /// Refuses, with `errc::invalid_config` naming the key or file, a file that
  /// does not parse, an unknown `netchan.*` key, or a value of the wrong type
  /// for any key netchan relies on.
  [[nodiscard]] caf::error load(int argc, char** argv);

  /// As above, with the arguments after the program name.
  [[nodiscard]] caf::error load(std::vector<std::string> args);

  /// Where the configuration came from: a file name, or "built-in defaults".
  const std::string& source() const noexcept {
    return source_;
  }

  /// The text of the shipped caf-application.conf, compiled in.
  static const char* builtin_defaults() noexcept;

  // -- the [netchan] section (bound to the options of the same name) ---------

  /// Name of this node in logs and listings.
  std::string node_name = "node";
  /// `host:port` this node listens on; empty: does not listen.
  std::string listen;
  /// Allows running without certificates (loopback only).
  bool insecure = false;
  /// Largest serialized value accepted, in bytes.
  size_t max_message_size = default_max_message_size;
  /// Capacity of channels created without one.
  size_t default_capacity = 1;
  /// Backstop timeout of every request to another node.
  caf::timespan request_timeout = std::chrono::seconds{10};
  /// How long connecting to a node may take.
  caf::timespan connect_timeout = std::chrono::seconds{5};
  /// How long operations wait for a broken link to heal: the dialling side
  /// redials meanwhile, the owner keeps the other side's leases, credit and
  /// waiting sends. Zero: a broken link ends the session at once.
  caf::timespan resume_timeout = std::chrono::seconds{30};
  /// The first redial after a link broke waits this long; each further one
  /// waits twice as long, up to `reconnect_max`. Each wait is drawn at
  /// random from its upper half (jitter).
  caf::timespan reconnect_initial = std::chrono::milliseconds{100};
  caf::timespan reconnect_max = std::chrono::seconds{2};
  /// `host:port` of nodes to dial at start.
  std::vector<std::string> peers;
  /// How long `node::start` keeps dialling `peers` (backing off from 100 ms
  /// to 2 s between tries) before it fails naming the unreachable peer.
  caf::timespan peer_wait = std::chrono::seconds{30};
  /// Channels the node hosts from the start, "NAME:TYPE:CAPACITY" each;
  /// TYPE is a registered portable type name ("@i32", "demo::job", ...).
  std::vector<std::string> channels;
  /// What this node is for in a deployment ("hub", "worker", "producer" in
  /// netchan-node); netchan itself does not read it.
  std::string role;

private:
  caf::error validate(const caf::settings& raw, const std::string& file) const;

  std::string source_;
};

} // namespace netchan
