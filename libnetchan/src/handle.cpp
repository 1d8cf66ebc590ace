#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include "channel_actor.hpp"
#include "endpoint_actor.hpp"
#include "netchan/detail/endpoint.hpp"
#include "netchan/config.hpp"
#include "netchan/errc.hpp"
#include "protocol.hpp"

namespace netchan::detail {

endpoint::endpoint(caf::actor_system& sys, caf::actor channel,
                   std::shared_ptr<channel_owner> owner, std::string type_name,
                   size_t capacity, size_t max_message_size)
  : sys_(&sys),
    actor_(spawn_endpoint(sys, std::move(channel))),
    owner_(std::move(owner)),
    type_name_(std::move(type_name)),
    capacity_(capacity),
    max_message_size_(max_message_size) {
}

endpoint::~endpoint() {
  caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
}

op_result endpoint::call(op_request req) const {
  auto slot = std::make_shared<sync_slot>();
  caf::anon_send(actor_, call_atom::value, std::move(req),
                 std::make_shared<thread_reply>(slot));
  return slot->wait();
}

void endpoint::post(op_request req) const {
  caf::anon_send(actor_, std::move(req));
}

channel_owner::~channel_owner() {
  caf::anon_send_exit(channel_, caf::exit_reason::user_shutdown);
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
  if (auto cfg = dynamic_cast<const netchan::config*>(&sys.config())) {
    spec.max_message_size = cfg->max_message_size;
    if (capacity == default_capacity)
      capacity = cfg->default_capacity;
  }
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
