#pragma once

// What a node reports about its links: a link to a channel's owner broke,
// healed, or stayed broken longer than netchan.resume-timeout. Every event
// is also written to the node's log (stderr).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace netchan {

struct link_event {
  enum class kind : uint8_t {
    /// The link broke; operations wait for it to heal.
    lost,
    /// The link healed and the session resumed; `replayed` values were sent
    /// again (or taken back) to settle what was in flight.
    restored,
    /// The link stayed broken for netchan.resume-timeout, or the other side
    /// came back as a new process: the session ended, its operations failed
    /// with errc::peer_down and its leases went back to the channel.
    expired,
  };

  kind what = kind::lost;
  /// The side that reports: true on the channel's owner, false on the node
  /// that uses the channel (and redials).
  bool owner_side = false;
  /// The other side: "host:port/channel" as the user opened it, or, on the
  /// owner's side, the other process's CAF node id.
  std::string peer;
  /// The channel's name.
  std::string channel;
  /// restored: values sent again, acknowledgements replayed and values taken
  /// back during the resume.
  uint64_t replayed = 0;
  /// restored, expired: how long the link was down.
  std::chrono::milliseconds gap{0};
};

/// "link lost", "link restored" or "session expired".
const char* to_string(link_event::kind what) noexcept;

/// One line, as the log writes it.
std::string to_string(const link_event& ev);

/// Called on an actor's thread for every event: return quickly, never block.
using link_watcher = std::function<void(const link_event&)>;

} // namespace netchan
