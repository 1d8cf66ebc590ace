#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

namespace netchan {

/// Everything that can go wrong with a channel, as a CAF error category.
/// Each error carries a sentence that says what happened and what to do;
/// `netchan::to_string(err)` returns it.
enum class errc : uint8_t {
  /// The channel is closed (and, for receivers, drained).
  closed = 1,
  /// A deadline passed; the operation was withdrawn at the channel's owner.
  timeout,
  /// The process owning the channel (or its link) is gone.
  peer_down,
  /// The owner died after matching a send and before confirming it: the value
  /// came back, but may also have been delivered.
  outcome_unknown,
  /// A value of one element type was offered to a channel of another.
  type_mismatch,
  /// A value exceeds `netchan.max-message-size`.
  message_too_large,
  /// The payload bytes of a value could not be decoded as the element type.
  malformed_value,
  /// No channel of that name exists at the node asked.
  unknown_channel,
  /// The configuration is invalid; the sentence names the key or file.
  invalid_config,
  /// An argument is out of range (a negative capacity, an empty name, ...).
  invalid_argument,
  /// The handle's actor system is shutting down or the handle was moved from.
  shut_down,
  /// A lease was already committed or released.
  lease_settled,
  /// No connection to a node could be made (refused, unknown host, no
  /// answer), or a node could not listen where configured.
  connect_failed,
  /// The TLS handshake with a node failed; the sentence names the cause.
  tls_failed,
  /// Internal: a try operation would have to wait. Never reaches users of the
  /// blocking API, which report it as `false` or an empty optional.
  would_block,
};

/// The CAF error category of netchan errors.
constexpr caf::atom_value errc_category = caf::atom("netchan");

/// Short name of an error code, e.g. "closed".
const char* to_string(errc code);

/// Makes an error with `sentence` as its explanation, or a generic one for
/// `code` if `sentence` is empty.
caf::error make_error(errc code, std::string sentence = {});

/// Returns whether `err` is the netchan error `code`.
bool is(const caf::error& err, errc code);

/// Renders any error as a sentence: netchan errors with their explanation,
/// CAF errors in CAF's own words.
std::string to_string(const caf::error& err);

/// Renders a netchan error; registered with the actor system by
/// `netchan::config` so that `sys.render(err)` reads the same.
std::string render_error(uint8_t code, caf::atom_value category,
                         const caf::message& context);

} // namespace netchan
