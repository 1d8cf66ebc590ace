#include "netchan/link_event.hpp"

namespace netchan {

const char* to_string(link_event::kind what) noexcept {
  switch (what) {
    case link_event::kind::lost:
      return "link lost";
    case link_event::kind::restored:
      return "link restored";
    case link_event::kind::expired:
      return "session expired";
  }
  return "link event";
}

std::string to_string(const link_event& ev) {
  std::string line = to_string(ev.what);
  line += ev.owner_side ? ": owner of channel '" : ": channel '";
  line += ev.channel;
  line += ev.owner_side ? "', session of " : "' at ";
  line += ev.peer;
  switch (ev.what) {
    case link_event::kind::lost:
      line += ev.owner_side ? "; its state is kept for it"
                            : "; redialling, operations wait";
      break;
    case link_event::kind::restored:
      line += " after " + std::to_string(ev.gap.count()) + " ms; "
              + std::to_string(ev.replayed) + " replayed";
      break;
    case link_event::kind::expired:
      line += " after " + std::to_string(ev.gap.count())
              + " ms; waiting operations failed with peer_down";
      break;
  }
  return line;
}

} // namespace netchan
