#include "netchan/detail/handle_base.hpp"

#include "netchan/errc.hpp"

namespace netchan::detail {

caf::error handle_base::empty_handle() const {
  return make_error(errc::invalid_argument,
                    "this handle refers to no channel (default-constructed "
                    "or moved from)");
}

op_result handle_base::query(op_kind kind) const {
  if (!ep_) {
    op_result res;
    res.err = empty_handle();
    return res;
  }
  op_request req;
  req.kind = kind;
  return ep_->call(std::move(req));
}

caf::error handle_base::close() const {
  return query(op_kind::close).err;
}

caf::expected<size_t> handle_base::len() const {
  auto res = query(op_kind::len);
  if (res.err)
    return std::move(res.err);
  return static_cast<size_t>(res.count);
}

size_t handle_base::cap() const noexcept {
  return ep_ ? ep_->capacity() : 0;
}

caf::expected<channel_stats> handle_base::stats() const {
  auto res = query(op_kind::stats);
  if (res.err)
    return std::move(res.err);
  return res.stats;
}

caf::expected<op_request>
handle_base::make_put(payload&& bytes, bool may_park,
                      caf::timespan timeout) const {
  if (!ep_)
    return empty_handle();
  if (bytes.size() > ep_->max_message_size())
    return make_error(errc::message_too_large,
                      "a value of " + std::to_string(bytes.size())
                        + " bytes exceeds netchan.max-message-size = "
                        + std::to_string(ep_->max_message_size())
                        + "; it was not sent");
  op_request req;
  req.kind = op_kind::put;
  req.value.bytes = std::move(bytes);
  req.may_park = may_park;
  req.timeout = timeout;
  return req;
}

caf::error handle_base::put(payload&& bytes, bool may_park,
                            caf::timespan timeout) const {
  auto req = make_put(std::move(bytes), may_park, timeout);
  if (!req)
    return std::move(req.error());
  return ep_->call(std::move(*req)).err;
}

op_result handle_base::get(bool may_park, caf::timespan timeout,
                           bool lease) const {
  if (!ep_) {
    op_result res;
    res.err = empty_handle();
    return res;
  }
  op_request req;
  req.kind = op_kind::get;
  req.may_park = may_park;
  req.timeout = timeout;
  req.lease = lease;
  return ep_->call(std::move(req));
}

caf::error settle_lease(const endpoint& ep, uint64_t lease_id, bool commit) {
  op_request req;
  req.kind = commit ? op_kind::commit : op_kind::release;
  req.lease_id = lease_id;
  return ep.call(std::move(req)).err;
}

void abandon_lease(const endpoint& ep, uint64_t lease_id) noexcept {
  op_request req;
  req.kind = op_kind::release;
  req.lease_id = lease_id;
  ep.post(std::move(req));
}

} // namespace netchan::detail
