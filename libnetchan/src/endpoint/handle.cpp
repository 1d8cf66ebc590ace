#include <random>

#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include "channel/channel_actor.hpp"
#include "node/directory.hpp"
#include "endpoint/endpoint_actor.hpp"
#include "netchan/config.hpp"
#include "netchan/detail/endpoint.hpp"
#include "netchan/errc.hpp"
#include "wire/protocol.hpp"
#include "hook/test_hook.hpp"

namespace netchan::detail {

namespace {

flow_ptr make_flow(size_t capacity, size_t owner_max) {
  auto f = std::make_shared<flow>();
  f->capacity = capacity;
  f->owner_max = owner_max;
  return f;
}

} // namespace

endpoint::endpoint(caf::actor_system& sys, caf::actor channel,
                   std::shared_ptr<channel_owner> owner, std::string type_name,
                   size_t capacity, size_t max_message_size, std::string where,
                   size_t owner_max)
  : sys_(&sys),
    flow_(make_flow(capacity, owner_max != 0 ? owner_max : max_message_size)),
    actor_(spawn_endpoint(sys, std::move(channel), flow_, where)),
    owner_(std::move(owner)),
    type_name_(std::move(type_name)),
    capacity_(capacity),
    max_message_size_(max_message_size),
    where_(std::move(where)) {
}

endpoint::endpoint(caf::actor_system& sys, std::string where,
                   std::string type_name, size_t capacity,
                   caf::actor directory, caf::timespan timeout,
                   caf::error error)
  : sys_(&sys),
    flow_(make_flow(capacity, 0)),
    actor_(spawn_resolving_endpoint(sys, where, type_name, flow_,
                                    std::move(directory), timeout,
                                    std::move(error))),
    type_name_(std::move(type_name)),
    capacity_(capacity),
    max_message_size_(max_message_size_of(sys)),
    where_(std::move(where)) {
}

endpoint::~endpoint() {
  caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
}

op_result endpoint::call(op_request req) const {
  auto kind = req.kind;
  auto lease = req.lease;
  if (kind == op_kind::get)
    test_hook::reached("receive");
  auto res = call_impl(std::move(req));
  if (!res.err && kind == op_kind::put)
    test_hook::reached("sent");
  else if (!res.err && kind == op_kind::get && lease)
    test_hook::reached("holding-lease");
  return res;
}

op_result endpoint::call_impl(op_request req) const {
  // The fast path: credit or a fetched value at hand, no message, no wait.
  if (capacity_ > 0 && req.kind == op_kind::put && req.timeout == no_deadline
      && send_fast(*flow_, actor_, req.value))
    return op_result{};
  if (capacity_ > 0 && req.kind == op_kind::get)
    if (auto v = receive_fast(*flow_, actor_, req.lease)) {
      op_result res;
      res.lease_id = req.lease ? v->lease : 0;
      res.value = std::move(*v);
      return res;
    }
  auto slot = std::make_shared<sync_slot>();
  caf::anon_send(actor_, call_atom::value, std::move(req),
                 std::make_shared<thread_reply>(slot));
  return slot->wait();
}

bool endpoint::try_credit(envelope& value) const {
  if (!detail::try_credit(*flow_, actor_, value))
    return false;
  test_hook::reached("sent");
  return true;
}

void endpoint::post(op_request req) const {
  caf::anon_send(actor_, std::move(req));
}

uint64_t endpoint::sender_id() const {
  std::lock_guard<std::mutex> guard{flow_->mtx};
  return flow_->sender_id;
}

caf::actor endpoint::local_channel() const {
  return owner_ ? owner_->channel() : caf::actor{};
}

caf::expected<std::string> endpoint::global_address() const {
  if (!where_.empty())
    return where_;
  if (owner_)
    return owner_->publish(*sys_, type_name_, capacity_);
  return make_error(errc::invalid_argument,
                    "this handle has no address other nodes could use");
}

channel_owner::~channel_owner() {
  caf::anon_send_exit(channel_, caf::exit_reason::user_shutdown);
}

caf::expected<std::string> channel_owner::publish(caf::actor_system& sys,
                                                  const std::string& type_name,
                                                  size_t capacity) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!where_.empty())
    return where_;
  auto node = find_local_node(sys);
  if (!node || node->address.empty())
    return make_error(errc::invalid_argument,
                      "a handle of an anonymous channel can only leave this "
                      "process through a listening netchan node: start one "
                      "(netchan::node::start with netchan.listen set)");
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  auto id = "#" + std::to_string(gen());
  caf::anon_send(node->directory, adopt_atom::value, id, channel_, type_name,
                 static_cast<uint64_t>(capacity),
                 static_cast<uint64_t>(max_message_size_of(sys)));
  where_ = node->address + "/" + id;
  return where_;
}

caf::error export_handle(const endpoint_ptr& ep, handle_ref& out) {
  if (!ep)
    return make_error(errc::invalid_argument,
                      "an empty handle cannot be sent to another node");
  auto where = ep->global_address();
  if (!where)
    return std::move(where.error());
  out = handle_ref{std::move(*where), ep->type_name(), ep->capacity()};
  return caf::none;
}

endpoint_ptr import_handle(caf::actor_system& sys, const handle_ref& ref) {
  auto node = find_local_node(sys);
  caf::actor directory;
  caf::timespan timeout{};
  caf::error error;
  if (node) {
    directory = node->directory;
    timeout = node->resolve_timeout;
  } else {
    error = make_error(errc::invalid_argument,
                       "a handle to " + ref.where
                         + " arrived, but this process runs no netchan node "
                           "to reach it: start one with netchan::node::start");
  }
  return std::make_shared<const endpoint>(sys, ref.where, ref.type_name,
                                          ref.capacity, std::move(directory),
                                          timeout, std::move(error));
}

caf::expected<std::pair<endpoint_ptr, endpoint_ptr>>
make_local_channel(caf::actor_system& sys, std::string type_name,
                   size_t capacity, std::string name) {
  if (type_name.compare(0, 13, "unregistered:") == 0)
    return make_error(errc::invalid_argument,
                      "the element type " + type_name.substr(13)
                        + " has no portable name: register it with "
                          "cfg.add_message_type<T>(\"name\")");
  channel_spec spec;
  spec.name = name.empty() ? "anonymous" : std::move(name);
  spec.type_name = type_name;
  // Settings come from netchan::config when the system was made with one.
  spec.max_message_size = max_message_size_of(sys);
  if (auto cfg = dynamic_cast<const netchan::config*>(&sys.config());
      cfg != nullptr && capacity == default_capacity)
    capacity = cfg->default_capacity;
  if (capacity == default_capacity)
    capacity = 1;
  spec.capacity = capacity;
  auto max_size = spec.max_message_size;
  auto owner = std::make_shared<channel_owner>(spawn_channel(sys, spec));
  auto tx = std::make_shared<const endpoint>(sys, owner->channel(), owner,
                                             type_name, capacity, max_size);
  auto rx = std::make_shared<const endpoint>(sys, owner->channel(), owner,
                                             type_name, capacity, max_size);
  return std::make_pair(std::move(tx), std::move(rx));
}

} // namespace netchan::detail
