#pragma once

// Typed channel handles: sender<T>, receiver<T>, lease<T>, and make_channel.
// Every handle is a thin template: it serializes T at the edge and calls the
// compiled core in detail/handle_base.hpp.

#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/execution_unit.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/timespan.hpp>

#include "netchan/detail/endpoint.hpp"
#include "netchan/detail/handle_base.hpp"
#include "netchan/envelope.hpp"
#include "netchan/errc.hpp"

namespace netchan {

/// Thrown by a receiver's range-for loop on any error but `closed`.
class channel_error : public std::runtime_error {
public:
  explicit channel_error(caf::error err)
    : std::runtime_error(netchan::to_string(err)), err_(std::move(err)) {
  }

  const caf::error& error() const noexcept {
    return err_;
  }

private:
  caf::error err_;
};

/// The sending side of a channel. Copyable and thread-safe; copies share one
/// endpoint, so values sent through copies keep one order per thread.
/// Blocking calls are for ordinary threads; actors use `async_send`.
template <class T>
class sender : public detail::handle_base {
public:
  sender() = default;

  /// @private
  explicit sender(detail::endpoint_ptr ep) : handle_base(std::move(ep)) {
  }

  /// Blocks until the channel has taken `value` (capacity N: it holds a
  /// slot; capacity 0: a receiver has taken it). On error the value was not
  /// delivered and stays with the caller.
  [[nodiscard]] caf::error send(const T& value) const {
    return send_impl(value, true, detail::no_deadline);
  }

  /// As `send`, but gives up after `timeout` with `errc::timeout`: the send
  /// is withdrawn at the channel's owner, which decides: delivered (no
  /// error) or not (error), never both.
  [[nodiscard]] caf::error send_for(const T& value,
                                    caf::timespan timeout) const {
    return send_impl(value, true, timeout);
  }

  /// Sends only if that needs no waiting (Go's select with default). Returns
  /// false if it would block; the caller's value is untouched either way.
  [[nodiscard]] caf::expected<bool> try_send(const T& value) const {
    auto err = send_impl(value, false, detail::no_deadline);
    if (!err)
      return true;
    if (is(err, errc::would_block))
      return false;
    return err;
  }

private:
  caf::error send_impl(const T& value, bool may_park,
                       caf::timespan timeout) const {
    if (!ep_)
      return empty_handle();
    payload bytes;
    if (auto err = encode(ep_->system(), value, bytes))
      return err;
    return put(std::move(bytes), may_park, timeout);
  }
};

/// A value from `receive_flagged`.
template <class T>
struct received {
  T value;
  /// Handed before to a receiver that did not acknowledge it.
  bool redelivered = false;
};

/// A received value that stays leased to its receiver until `commit()`.
/// If the lease is released, or destroyed uncommitted, or its holder's
/// endpoint dies, the value goes back to the head of the channel and is
/// delivered again flagged `redelivered()`. Move-only.
template <class T>
class lease {
public:
  lease(detail::endpoint_ptr ep, uint64_t id, T value, bool redelivered)
    : ep_(std::move(ep)), id_(id), value_(std::move(value)),
      redelivered_(redelivered) {
  }

  lease(lease&& other) noexcept
    : ep_(std::move(other.ep_)), id_(std::exchange(other.id_, 0)),
      value_(std::move(other.value_)), redelivered_(other.redelivered_) {
  }

  lease& operator=(lease&& other) noexcept {
    if (this != &other) {
      abandon();
      ep_ = std::move(other.ep_);
      id_ = std::exchange(other.id_, 0);
      value_ = std::move(other.value_);
      redelivered_ = other.redelivered_;
    }
    return *this;
  }

  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;

  ~lease() {
    abandon();
  }

  const T& value() const noexcept {
    return value_;
  }

  T& value() noexcept {
    return value_;
  }

  /// Whether an earlier receiver was handed this value and did not commit it.
  bool redelivered() const noexcept {
    return redelivered_;
  }

  /// Whether commit or release still has to be called.
  bool pending() const noexcept {
    return id_ != 0;
  }

  /// Done with the value: it leaves the channel for good.
  [[nodiscard]] caf::error commit() {
    return settle(true);
  }

  /// Gives the value back: another receiver gets it, flagged redelivered.
  [[nodiscard]] caf::error release() {
    return settle(false);
  }

private:
  caf::error settle(bool commit) {
    if (id_ == 0)
      return make_error(errc::lease_settled,
                        "this lease was already committed or released");
    return detail::settle_lease(*ep_, std::exchange(id_, 0), commit);
  }

  void abandon() noexcept {
    if (id_ != 0 && ep_)
      detail::abandon_lease(*ep_, std::exchange(id_, 0));
  }

  detail::endpoint_ptr ep_;
  uint64_t id_;
  T value_;
  bool redelivered_;
};

/// The receiving side of a channel. Copyable and thread-safe; each value
/// goes to exactly one receive call. Actors use `async_receive`.
template <class T>
class receiver : public detail::handle_base {
public:
  receiver() = default;

  /// @private
  explicit receiver(detail::endpoint_ptr ep) : handle_base(std::move(ep)) {
  }

  /// Blocks until a value arrives; `errc::closed` once the channel is closed
  /// and every value has been received. Other errors (the owner is gone)
  /// are errors, not "closed".
  [[nodiscard]] caf::expected<T> receive() const {
    return receive_impl(true, detail::no_deadline);
  }

  /// As `receive`, failing with `errc::timeout` after `timeout`; a value
  /// that the owner handed out before it saw the withdrawal is returned,
  /// never dropped.
  [[nodiscard]] caf::expected<T> receive_for(caf::timespan timeout) const {
    return receive_impl(true, timeout);
  }

  /// Receives only if a value is ready (Go's select with default): an empty
  /// optional if none is.
  [[nodiscard]] caf::expected<std::optional<T>> try_receive() const {
    auto res = receive_impl(false, detail::no_deadline);
    if (res)
      return std::optional<T>{std::move(*res)};
    if (is(res.error(), errc::would_block))
      return std::optional<T>{};
    return std::move(res.error());
  }

  /// Blocks until a value arrives and leases it: the value stays the
  /// channel's until `commit()`, and is re-queued if this process dies or
  /// the lease is dropped first.
  [[nodiscard]] caf::expected<lease<T>> receive_lease() const {
    return receive_lease_for(detail::no_deadline);
  }

  /// As `receive_lease`, failing with `errc::timeout` after `timeout`.
  [[nodiscard]] caf::expected<lease<T>>
  receive_lease_for(caf::timespan timeout) const {
    if (!ep_)
      return empty_handle();
    auto res = get(true, timeout, true);
    if (res.err)
      return std::move(res.err);
    lease<T> result{ep_, res.lease_id, T{}, res.value.redelivered};
    auto value = decode<T>(ep_->system(), res.value.bytes);
    if (!value) {
      // Undecodable for every receiver alike: drop it, loudly.
      static_cast<void>(result.commit());
      return std::move(value.error());
    }
    result.value() = std::move(*value);
    return result;
  }

  /// As `receive`, and says whether the value was `redelivered`: handed
  /// before to a receiver that died (or released it) without acknowledging
  /// it, so it may have been seen, and acted on, once already.
  [[nodiscard]] caf::expected<received<T>> receive_flagged() const {
    envelope meta;
    auto value = receive_with(meta);
    if (!value)
      return std::move(value.error());
    return received<T>{std::move(*value), meta.redelivered};
  }

  /// A value with the id of the endpoint that sent it. @private
  caf::expected<std::pair<T, uint64_t>> receive_tagged() const {
    envelope meta;
    auto value = receive_with(meta);
    if (!value)
      return std::move(value.error());
    return std::make_pair(std::move(*value), meta.sender);
  }

  // -- range-for: receives until closed --------------------------------------

  class iterator {
  public:
    using iterator_category = std::input_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = T*;
    using reference = T&;

    iterator() = default;

    explicit iterator(const receiver* rx) : rx_(rx) {
      advance();
    }

    T& operator*() {
      return *value_;
    }

    iterator& operator++() {
      advance();
      return *this;
    }

    bool operator==(const iterator& other) const {
      return rx_ == other.rx_;
    }

    bool operator!=(const iterator& other) const {
      return rx_ != other.rx_;
    }

  private:
    void advance() {
      auto res = rx_->receive();
      if (res) {
        value_ = std::move(*res);
        return;
      }
      rx_ = nullptr;
      value_.reset();
      if (!is(res.error(), errc::closed))
        throw channel_error{std::move(res.error())};
    }

    const receiver* rx_ = nullptr;
    std::optional<T> value_;
  };

  /// Receives the first value; the loop ends when the channel is closed and
  /// drained, and throws `channel_error` on any other error.
  iterator begin() const {
    return iterator{this};
  }

  iterator end() const {
    return iterator{};
  }

private:
  /// Blocks for a value; `meta` gets its envelope (sender, flags).
  caf::expected<T> receive_with(envelope& meta) const {
    if (!ep_)
      return empty_handle();
    auto res = get(true, detail::no_deadline, false);
    if (res.err)
      return std::move(res.err);
    auto value = decode<T>(ep_->system(), res.value.bytes);
    meta = std::move(res.value);
    return value;
  }

  caf::expected<T> receive_impl(bool may_park, caf::timespan timeout) const {
    auto res = get(may_park, timeout, false);
    if (res.err)
      return std::move(res.err);
    return decode<T>(ep_->system(), res.value.bytes);
  }
};

// -- handles inside values ------------------------------------------------------

namespace detail {

/// A handle travels as "host:port/channel" plus its element type and
/// capacity, never as a CAF actor handle (which would route through whoever
/// forwarded it and pin the actor). On arrival it resolves through the
/// receiving node's directory, on first use. @private
template <class T, class Inspector>
typename Inspector::result_type inspect_handle(Inspector& f, handle_base& x,
                                               const char* kind) {
  using result_type = typename Inspector::result_type;
  if constexpr (std::is_same<result_type, void>::value) {
    // to_string: show the address if there is one, never publish for it
    std::string where = "local";
    if (x.endpoint_ref())
      if (auto addr = x.endpoint_ref()->global_address())
        where = *addr;
    f(caf::meta::type_name(kind), where);
  } else if constexpr (Inspector::reads_state) {
    handle_ref ref;
    if (auto err = export_handle(x.endpoint_ref(), ref))
      return err;
    return f(caf::meta::type_name(kind), ref.where, ref.type_name,
             ref.capacity);
  } else {
    handle_ref ref;
    if (auto err = f(caf::meta::type_name(kind), ref.where, ref.type_name,
                     ref.capacity))
      return err;
    auto ctx = f.context();
    if (ctx == nullptr)
      return make_error(errc::invalid_argument,
                        "a netchan handle can only be decoded with an actor "
                        "system at hand");
    auto& sys = ctx->system();
    auto expected = element_type_name<T>(sys);
    if (ref.type_name != expected)
      return make_error(errc::type_mismatch,
                        "a handle of a channel of " + ref.type_name
                          + " arrived where one of " + expected
                          + " was expected");
    x.assign(import_handle(sys, ref));
    return caf::none;
  }
}

} // namespace detail

template <class Inspector, class T>
typename Inspector::result_type inspect(Inspector& f, sender<T>& x) {
  return detail::inspect_handle<T>(f, x, "netchan::sender");
}

template <class Inspector, class T>
typename Inspector::result_type inspect(Inspector& f, receiver<T>& x) {
  return detail::inspect_handle<T>(f, x, "netchan::receiver");
}

/// Makes an anonymous channel of `T` with `capacity` slots (0: unbuffered,
/// every send waits for a receiver). It lives while any handle does.
/// Fails if `T` has no portable name (register it with
/// `cfg.add_message_type<T>("name")`).
template <class T>
caf::expected<std::pair<sender<T>, receiver<T>>>
make_channel(caf::actor_system& sys, size_t capacity,
             std::string name = {}) {
  auto eps = detail::make_local_channel(sys, element_type_name<T>(sys),
                                        capacity, std::move(name));
  if (!eps)
    return std::move(eps.error());
  return std::make_pair(sender<T>{std::move(eps->first)},
                        receiver<T>{std::move(eps->second)});
}

/// Makes an anonymous channel with `netchan.default-capacity` slots (1
/// unless configured otherwise, as in the original Go netchan).
template <class T>
caf::expected<std::pair<sender<T>, receiver<T>>>
make_channel(caf::actor_system& sys) {
  return make_channel<T>(sys, detail::default_capacity);
}

} // namespace netchan
