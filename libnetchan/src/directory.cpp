#include "directory.hpp"

#include <map>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "channel_actor.hpp"
#include "netchan/errc.hpp"

namespace netchan::detail {

namespace {

struct entry {
  caf::actor channel;
  std::string type_name;
  uint64_t capacity;
};

class directory_actor : public caf::event_based_actor {
public:
  directory_actor(caf::actor_config& cfg, std::string node_name)
    : caf::event_based_actor(cfg), node_name_(std::move(node_name)) {
  }

  const char* name() const override {
    return "netchan.directory";
  }

  caf::behavior make_behavior() override {
    return {
      [this](create_atom, std::string& name, std::string& type_name,
             uint64_t capacity, uint64_t max_size) -> caf::result<caf::actor> {
        return create(std::move(name), std::move(type_name), capacity,
                      max_size);
      },
      [this](lookup_atom, const std::string& name)
        -> caf::result<caf::actor, std::string, uint64_t> {
        auto i = channels_.find(name);
        if (i == channels_.end())
          return make_error(errc::unknown_channel,
                            "node '" + node_name_ + "' has no channel '" + name
                              + "'; it has: " + names());
        return {i->second.channel, i->second.type_name, i->second.capacity};
      },
      [this](list_atom) { return names(); },
    };
  }

  void on_exit() override {
    for (auto& [name, e] : channels_)
      anon_send_exit(e.channel, caf::exit_reason::user_shutdown);
    channels_.clear();
  }

private:
  caf::result<caf::actor> create(std::string name, std::string type_name,
                                 uint64_t capacity, uint64_t max_size) {
    if (name.empty() || name.find('/') != std::string::npos)
      return make_error(errc::invalid_argument,
                        "a channel name must be non-empty and contain no '/'");
    if (auto i = channels_.find(name); i != channels_.end()) {
      auto& e = i->second;
      if (e.type_name != type_name || e.capacity != capacity)
        return make_error(errc::invalid_argument,
                          "node '" + node_name_ + "' already hosts channel '"
                            + name + "' of " + e.type_name + " with capacity "
                            + std::to_string(e.capacity));
      return e.channel;
    }
    channel_spec spec{name, type_name, capacity, max_size};
    auto ch = spawn_channel(system(), spec);
    channels_.emplace(std::move(name), entry{ch, std::move(type_name),
                                             capacity});
    return ch;
  }

  std::string names() const {
    std::string result;
    for (auto& [name, e] : channels_) {
      if (!result.empty())
        result += ", ";
      result += name;
    }
    return result.empty() ? "(none)" : result;
  }

  std::string node_name_;
  std::map<std::string, entry> channels_;
};

} // namespace

caf::actor spawn_directory(caf::actor_system& sys, std::string node_name) {
  return sys.spawn<directory_actor>(std::move(node_name));
}

} // namespace netchan::detail
