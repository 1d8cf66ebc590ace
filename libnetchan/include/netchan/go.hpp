#pragma once

// Go-netchan compatibility: listen and dial, as in the Go library's quick
// start, with netchan's guarantees.
//
//   auto l = *netchan::listen<job>(sys, "127.0.0.1:9999");  // the server
//   auto d = *netchan::dial<job>(sys, "127.0.0.1:9999");    // each client
//
// On the listener, `receive` fans in from every client, `send` hands each
// value to exactly one connected client, `receive_from` tells who sent a
// value and `reply` answers that client. A client that leaves never wedges
// the listener: a value that could not reach it comes back and goes to
// another client.
//
// Capacities. Both sides' channels buffer values: `listen`'s capacity is
// how many values all clients together may have sent that the listener has
// not received yet before a client's `send` blocks; `dial`'s is how many
// values the listener may have sent to this client that it has not received
// yet (once its inbox is full, the listener's `send` goes to another client
// or waits). Capacity 1 is the Go library's one-message buffer; the
// defaults (1024 and 256) let values stream without a round trip each.
// The price of a larger client inbox: if a client process dies, the values
// it had been sent and not yet received (at most its capacity) are lost
// with it, as a buffered channel's values are with its owner.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "netchan/channel.hpp"
#include "netchan/node.hpp"

namespace netchan {

/// Who sent a value to a listener; `reply` takes it.
using client_id = uint64_t;

/// `listen`'s default capacity: values the fan-in channel buffers, from all
/// clients together, before a client's `send` blocks.
constexpr size_t default_listen_capacity = 1024;

/// `dial`'s default capacity: values a client's inbox buffers before the
/// listener's `send` skips this client (or waits for it).
constexpr size_t default_dial_capacity = 256;

namespace detail {

class listener_state;

/// @private
caf::expected<std::shared_ptr<listener_state>>
start_listener(caf::actor_system& sys, const std::string& address,
               const std::string& type_name, size_t capacity);

/// The receiver endpoint of the listener's fan-in channel. @private
endpoint_ptr listener_inbox(listener_state& st);

/// Sends to one connected client, waiting for one if none is. @private
caf::error listener_send(listener_state& st, payload&& bytes);

/// Sends to client `to`. @private
caf::error listener_reply(listener_state& st, client_id to,
                          payload&& bytes);

/// Connected clients. @private
size_t listener_clients(listener_state& st);

/// @private
netchan::node& listener_node(listener_state& st);

/// A dialer's parts: its node, the sender into the listener's fan-in, and
/// the receiver of its own inbox. @private
struct dialed {
  netchan::node node;
  endpoint_ptr out;
  endpoint_ptr in;
};

/// @private
caf::expected<dialed> dial_listener(caf::actor_system& sys,
                                    const std::string& address,
                                    const std::string& type_name,
                                    size_t capacity);

} // namespace detail

/// The listening side of listen/dial. Copies share one listener.
template <class T>
class listener {
public:
  /// @private
  explicit listener(std::shared_ptr<detail::listener_state> st)
    : st_(std::move(st)),
      rx_(detail::listener_inbox(*st_)) {
  }

  /// Hands `value` to exactly one connected client (waiting for one if none
  /// is connected). On error the value was not delivered, except
  /// `errc::outcome_unknown`: a client left just after it may have taken it.
  [[nodiscard]] caf::error send(const T& value) const {
    payload bytes;
    if (auto err = encode(rx_.endpoint_ref()->system(), value, bytes))
      return err;
    return detail::listener_send(*st_, std::move(bytes));
  }

  /// The next value from any client.
  [[nodiscard]] caf::expected<T> receive() const {
    return rx_.receive();
  }

  /// The next value from any client, with the client that sent it.
  [[nodiscard]] caf::expected<std::pair<T, client_id>> receive_from() const {
    return rx_.receive_tagged();
  }

  /// Answers client `to`; `errc::peer_down` if it has left.
  [[nodiscard]] caf::error reply(client_id to, const T& value) const {
    payload bytes;
    if (auto err = encode(rx_.endpoint_ref()->system(), value, bytes))
      return err;
    return detail::listener_reply(*st_, to, std::move(bytes));
  }

  /// Clients connected now.
  size_t clients() const {
    return detail::listener_clients(*st_);
  }

  /// The node listening; its address is where clients dial.
  netchan::node& node() const {
    return detail::listener_node(*st_);
  }

private:
  std::shared_ptr<detail::listener_state> st_;
  receiver<T> rx_;
};

/// The dialling side of listen/dial.
template <class T>
class dialer {
public:
  /// @private
  explicit dialer(detail::dialed parts)
    : node_(std::move(parts.node)),
      tx_(std::move(parts.out)),
      rx_(std::move(parts.in)) {
  }

  /// Sends to the listener (its `receive` fans in from every client).
  [[nodiscard]] caf::error send(const T& value) const {
    return tx_.send(value);
  }

  /// The next value the listener sent to this client or replied to it.
  [[nodiscard]] caf::expected<T> receive() const {
    return rx_.receive();
  }

  const sender<T>& sending() const noexcept {
    return tx_;
  }

  const receiver<T>& receiving() const noexcept {
    return rx_;
  }

private:
  netchan::node node_;
  sender<T> tx_;
  receiver<T> rx_;
};

/// Listens on `address` ("host:port", port 0 picks one) with this system's
/// configuration (certificates as for any node). `capacity`: values the
/// fan-in buffers (from all clients together) before a client's `send`
/// blocks; 1 is the Go library's one-message buffer, 0 makes each client's
/// `send` wait until the listener receives its value.
template <class T>
caf::expected<listener<T>>
listen(caf::actor_system& sys, const std::string& address,
       size_t capacity = default_listen_capacity) {
  auto st = detail::start_listener(sys, address, element_type_name<T>(sys),
                                   capacity);
  if (!st)
    return std::move(st.error());
  return listener<T>{std::move(*st)};
}

/// Dials the listener at `address`. `capacity`: values this client's inbox
/// buffers before the listener's `send` skips it (or waits for it); 1 is
/// the Go library's one-message buffer. A client that dies loses what its
/// inbox held: at most `capacity` values.
template <class T>
caf::expected<dialer<T>> dial(caf::actor_system& sys,
                              const std::string& address,
                              size_t capacity = default_dial_capacity) {
  auto parts = detail::dial_listener(sys, address, element_type_name<T>(sys),
                                     capacity);
  if (!parts)
    return std::move(parts.error());
  return dialer<T>{std::move(*parts)};
}

} // namespace netchan
