#pragma once

// Go's select over netchan channels, owned by any nodes:
//
//   auto r = netchan::select({netchan::on_receive(jobs),
//                             netchan::on_send(results, answer)});
//   if (r.index == 0) { auto job = r.value(jobs); ... }
//
// Exactly one case fires. Among cases ready at once one is chosen at random
// (after every case has answered), as in Go. A case that does not fire
// leaves no trace: a receive consumes nothing, a send delivers nothing (the
// caller still has its value). The selector is the single commit point;
// libnetchan/src/select/selector.cpp describes the protocol.

#include <cstddef>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "netchan/channel.hpp"
#include "netchan/envelope.hpp"

namespace netchan {

/// The `index` of a select in which no case fired: the default of
/// `try_select` (error `would_block`) or the timeout of `select_for`
/// (error `timeout`).
constexpr size_t no_case = static_cast<size_t>(-1);

/// One case of a select: a receive from, or a send to, a channel.
class select_case {
public:
  /// @private
  struct spec {
    detail::endpoint_ptr ep;
    bool is_send = false;
    envelope value;
    /// Set if the case cannot even be offered (e.g. the value does not
    /// encode): the case fires with it at once.
    caf::error error;
  };

  /// @private
  explicit select_case(spec s) : spec_(std::move(s)) {
  }

  /// @private
  const spec& get() const noexcept {
    return spec_;
  }

private:
  spec spec_;
};

/// A case that receives from `rx`.
template <class T>
select_case on_receive(const receiver<T>& rx) {
  select_case::spec s;
  s.ep = rx.endpoint_ref();
  if (!s.ep)
    s.error = make_error(errc::invalid_argument,
                         "a select case on an empty receiver");
  return select_case{std::move(s)};
}

/// A case that sends `value` to `tx`; if it does not fire, nothing is sent.
template <class T>
select_case on_send(const sender<T>& tx, const T& value) {
  select_case::spec s;
  s.ep = tx.endpoint_ref();
  s.is_send = true;
  payload bytes;
  if (!s.ep) {
    s.error = make_error(errc::invalid_argument,
                         "a select case on an empty sender");
  } else if (auto err = encode(s.ep->system(), value, bytes)) {
    s.error = std::move(err);
  } else if (auto req = tx.make_put(std::move(bytes), true,
                                    detail::no_deadline)) {
    s.value = std::move(req->value);
  } else {
    s.error = std::move(req.error());
  }
  return select_case{std::move(s)};
}

/// What a select did: which case fired, and how.
struct selected {
  /// The case that fired, or `no_case`.
  size_t index = no_case;
  /// The fired case's error (closed, peer_down, outcome_unknown, ...), or
  /// why no case fired (would_block, timeout); empty on success.
  caf::error error;
  /// A receive case: the value had been handed to a receiver that died
  /// before acknowledging it.
  bool redelivered = false;
  /// A receive case: the value's bytes. @private
  payload bytes;

  /// The value a receive case got from `rx` (the case's receiver).
  template <class T>
  caf::expected<T> value(const receiver<T>& rx) const {
    if (error)
      return error;
    return decode<T>(rx.endpoint_ref()->system(), bytes);
  }
};

namespace detail {

/// (select_go) -> selected: starts a selector. @private
using select_go_atom = caf::atom_constant<caf::atom("nc_selgo")>;

enum class select_mode { block, timeout, poll };

/// @private
caf::actor spawn_selector(caf::actor_system& sys,
                          std::vector<select_case> cases, select_mode mode,
                          caf::timespan timeout);

/// @private
selected run_select(std::vector<select_case> cases, select_mode mode,
                    caf::timespan timeout);

template <class F>
void async_select(caf::event_based_actor* self, std::vector<select_case> cases,
                  select_mode mode, caf::timespan timeout, F on_done) {
  auto sel = spawn_selector(self->system(), std::move(cases), mode, timeout);
  self->request(sel, caf::infinite, select_go_atom::value)
    .then([on_done](selected& r) mutable { on_done(std::move(r)); },
          [on_done](caf::error& err) mutable {
            selected r;
            r.error = std::move(err);
            on_done(std::move(r));
          });
}

} // namespace detail

/// Blocks until one case fires. Never call it from inside an actor: use
/// `async_select`.
[[nodiscard]] inline selected select(std::vector<select_case> cases) {
  return detail::run_select(std::move(cases), detail::select_mode::block, {});
}

/// As `select`, but gives up after `timeout`: `index == no_case`, error
/// `timeout`, and every case withdrawn.
[[nodiscard]] inline selected select_for(std::vector<select_case> cases,
                                         caf::timespan timeout) {
  return detail::run_select(std::move(cases), detail::select_mode::timeout,
                            timeout);
}

/// Go's select with a default case: fires a case that is ready now, else
/// returns at once with `index == no_case` and error `would_block`.
[[nodiscard]] inline selected try_select(std::vector<select_case> cases) {
  return detail::run_select(std::move(cases), detail::select_mode::poll, {});
}

/// `select` for event-based actors: never blocks; calls `on_done(selected)`.
template <class F>
void async_select(caf::event_based_actor* self, std::vector<select_case> cases,
                  F on_done) {
  detail::async_select(self, std::move(cases), detail::select_mode::block, {},
                       std::move(on_done));
}

/// `select_for` for event-based actors.
template <class F>
void async_select_for(caf::event_based_actor* self,
                      std::vector<select_case> cases, caf::timespan timeout,
                      F on_done) {
  detail::async_select(self, std::move(cases), detail::select_mode::timeout,
                       timeout, std::move(on_done));
}

} // namespace netchan

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(netchan::selected)
