#pragma once

// Channel operations for event-based actors. They never block: each sends a
// request to the handle's endpoint and calls the continuation with the
// verdict, like `self->request(...).then(...)`.

#include <caf/event_based_actor.hpp>

#include "netchan/channel.hpp"

namespace netchan {

namespace detail {

template <class F>
void async_put(caf::event_based_actor* self, const handle_base& tx,
               caf::expected<op_request>&& req, F on_done) {
  if (!req) {
    on_done(std::move(req.error()));
    return;
  }
  self->request(tx.endpoint_ref()->actor(), caf::infinite, std::move(*req))
    .then([on_done](op_result& res) mutable { on_done(std::move(res.err)); },
          [on_done](caf::error& err) mutable { on_done(std::move(err)); });
}

} // namespace detail

/// Sends `value` from inside an actor; calls `on_done(caf::error)` when the
/// channel has taken it (no error) or refused it.
template <class T, class F>
void async_send(caf::event_based_actor* self, const sender<T>& tx,
                const T& value, F on_done) {
  async_send_for(self, tx, value, detail::no_deadline, std::move(on_done));
}

/// As `async_send`, withdrawn with `errc::timeout` after `timeout`.
template <class T, class F>
void async_send_for(caf::event_based_actor* self, const sender<T>& tx,
                    const T& value, caf::timespan timeout, F on_done) {
  payload bytes;
  if (auto err = encode(self->system(), value, bytes)) {
    on_done(std::move(err));
    return;
  }
  detail::async_put(self, tx, tx.make_put(std::move(bytes), true, timeout),
                    std::move(on_done));
}

/// Receives a value from inside an actor; calls `on_value(caf::expected<T>)`
/// with the value, or `errc::closed` once the channel is closed and drained.
template <class T, class F>
void async_receive(caf::event_based_actor* self, const receiver<T>& rx,
                   F on_value) {
  async_receive_for(self, rx, detail::no_deadline, std::move(on_value));
}

/// As `async_receive`, withdrawn with `errc::timeout` after `timeout`.
template <class T, class F>
void async_receive_for(caf::event_based_actor* self, const receiver<T>& rx,
                       caf::timespan timeout, F on_value) {
  if (!rx) {
    on_value(caf::expected<T>{
      make_error(errc::invalid_argument, "empty receiver handle")});
    return;
  }
  detail::op_request req;
  req.kind = detail::op_kind::get;
  req.timeout = timeout;
  auto* sys = &self->system();
  self->request(rx.endpoint_ref()->actor(), caf::infinite, std::move(req))
    .then(
      [on_value, sys](detail::op_result& res) mutable {
        if (res.err)
          on_value(caf::expected<T>{std::move(res.err)});
        else
          on_value(decode<T>(*sys, res.value.bytes));
      },
      [on_value](caf::error& err) mutable {
        on_value(caf::expected<T>{std::move(err)});
      });
}

} // namespace netchan
