#include "netchan/errc.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace netchan {

namespace {

/// The sentence used when an error is made without one.
const char* generic_sentence(errc code) {
  switch (code) {
    case errc::closed:
      return "the channel is closed";
    case errc::timeout:
      return "the deadline passed before the operation could complete; it "
             "was withdrawn and the value stays with the caller";
    case errc::peer_down:
      return "the node owning the channel is unreachable or gone";
    case errc::outcome_unknown:
      return "the channel's owner went down after taking the value and "
             "before confirming it: it may have been delivered";
    case errc::type_mismatch:
      return "the value's element type does not match the channel's";
    case errc::message_too_large:
      return "the value exceeds netchan.max-message-size";
    case errc::malformed_value:
      return "the value's bytes could not be decoded as the channel's "
             "element type";
    case errc::unknown_channel:
      return "no channel of that name exists";
    case errc::invalid_config:
      return "the configuration is invalid";
    case errc::invalid_argument:
      return "invalid argument";
    case errc::shut_down:
      return "the actor system behind this handle is shutting down";
    case errc::lease_settled:
      return "the lease was already committed or released";
    case errc::connect_failed:
      return "cannot connect to the node";
    case errc::tls_failed:
      return "the TLS handshake with the node failed";
    case errc::would_block:
      return "the operation would block";
  }
  return "unknown netchan error";
}

} // namespace

const char* to_string(errc code) {
  switch (code) {
    case errc::closed: return "closed";
    case errc::timeout: return "timeout";
    case errc::peer_down: return "peer_down";
    case errc::outcome_unknown: return "outcome_unknown";
    case errc::type_mismatch: return "type_mismatch";
    case errc::message_too_large: return "message_too_large";
    case errc::malformed_value: return "malformed_value";
    case errc::unknown_channel: return "unknown_channel";
    case errc::invalid_config: return "invalid_config";
    case errc::invalid_argument: return "invalid_argument";
    case errc::shut_down: return "shut_down";
    case errc::lease_settled: return "lease_settled";
    case errc::connect_failed: return "connect_failed";
    case errc::tls_failed: return "tls_failed";
    case errc::would_block: return "would_block";
  }
  return "unknown";
}

caf::error make_error(errc code, std::string sentence) {
  if (sentence.empty())
    sentence = generic_sentence(code);
  return {static_cast<uint8_t>(code), errc_category,
          caf::make_message(std::move(sentence))};
}

bool is(const caf::error& err, errc code) {
  // CAF 0.17's error::category() dereferences null on an empty error.
  return err && err.category() == errc_category
         && err.code() == static_cast<uint8_t>(code);
}

std::string render_error(uint8_t code, caf::atom_value,
                         const caf::message& context) {
  std::string result = to_string(static_cast<errc>(code));
  result += ": ";
  if (context.match_elements<std::string>())
    result += context.get_as<std::string>(0);
  else
    result += generic_sentence(static_cast<errc>(code));
  return result;
}

std::string to_string(const caf::error& err) {
  if (!err)
    return "no error";
  if (err.category() == errc_category)
    return render_error(err.code(), err.category(), err.context());
  if (err.category() == caf::atom("system"))
    return "CAF: " + caf::to_string(static_cast<caf::sec>(err.code()))
           + (err.context().empty() ? "" : " " + caf::to_string(err.context()));
  return caf::to_string(err);
}

} // namespace netchan
