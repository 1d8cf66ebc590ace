#include "node/directory.hpp"

#include <iostream>
#include <map>
#include <mutex>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/node_id.hpp>
#include <caf/openssl/manager.hpp>

#include "channel/channel_actor.hpp"
#include "netchan/errc.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

caf::expected<channel_address> parse_host_port(const std::string& text) {
  auto bad = [&] {
    return make_error(errc::invalid_argument,
                      "'" + text + "' is not host:port (e.g. 127.0.0.1:7000)");
  };
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return bad();
  auto host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  // No host holds these; refusing them keeps host + ":" + port unambiguous.
  if (host.find_first_of("[]/") != std::string::npos)
    return bad();
  auto digits = text.substr(colon + 1);
  if (digits.find_first_not_of("0123456789") != std::string::npos
      || digits.size() > 5)
    return bad();
  auto port = std::stoul(digits);
  if (port > 65535)
    return bad();
  return channel_address{host, static_cast<uint16_t>(port), {}};
}

caf::expected<channel_address> parse_channel_address(const std::string& where) {
  auto slash = where.rfind('/');
  if (slash == std::string::npos || slash + 1 == where.size())
    return make_error(errc::invalid_argument,
                      "'" + where + "' is not host:port/name");
  auto result = parse_host_port(where.substr(0, slash));
  if (result)
    result->name = where.substr(slash + 1);
  return result;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.compare(0, 4, "127.") == 0;
}

namespace {

struct entry {
  caf::actor channel;
  std::string type_name;
  uint64_t capacity;
  uint64_t max_size;
};

using lookup_result = caf::result<caf::actor, std::string, uint64_t, uint64_t>;

class directory_actor : public caf::event_based_actor {
public:
  directory_actor(caf::actor_config& cfg, directory_spec spec)
    : caf::event_based_actor(cfg), spec_(std::move(spec)) {
    set_down_handler([this](caf::down_msg& msg) {
      for (auto i = remotes_.begin(); i != remotes_.end();)
        i = i->second.address() == msg.source ? remotes_.erase(i)
                                              : std::next(i);
      for (auto i = channels_.begin(); i != channels_.end();)
        i = i->second.channel.address() == msg.source ? channels_.erase(i)
                                                      : std::next(i);
    });
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
      [this](adopt_atom, std::string& id, caf::actor& ch,
             std::string& type_name, uint64_t capacity, uint64_t max_size) {
        monitor(ch); // forgotten when its last local handle stops it
        channels_.emplace(std::move(id), entry{std::move(ch),
                                               std::move(type_name), capacity,
                                               max_size});
      },
      [this](lookup_atom, const std::string& name) -> lookup_result {
        return lookup(name);
      },
      [this](resolve_atom, const std::string& where) -> lookup_result {
        return resolve(where);
      },
      [this](address_atom, std::string& address) {
        address_ = std::move(address);
      },
      [this](list_atom) { return names(); },
      [this](dial_atom, const std::string& where) { return dial(where); },
      [this](hello_atom, const std::string& name) { hello(name); },
    };
  }

  void on_exit() override {
    for (auto& [name, e] : channels_)
      if (name.front() != '#') // adopted channels belong to their handles
        anon_send_exit(e.channel, caf::exit_reason::user_shutdown);
    channels_.clear();
  }

private:
  caf::result<caf::actor> create(std::string name, std::string type_name,
                                 uint64_t capacity, uint64_t max_size) {
    if (name.empty() || name.find('/') != std::string::npos || name[0] == '#')
      return make_error(errc::invalid_argument,
                        "a channel name must be non-empty, contain no '/' "
                        "and not start with '#'");
    if (auto i = channels_.find(name); i != channels_.end()) {
      auto& e = i->second;
      if (e.type_name != type_name || e.capacity != capacity)
        return make_error(errc::invalid_argument,
                          "node '" + spec_.node_name
                            + "' already hosts channel '" + name + "' of "
                            + e.type_name + " with capacity "
                            + std::to_string(e.capacity));
      return e.channel;
    }
    channel_spec spec{name, type_name, capacity, max_size,
                      spec_.resume_timeout, spec_.links};
    auto ch = spawn_channel(system(), spec);
    channels_.emplace(std::move(name),
                      entry{ch, std::move(type_name), capacity, max_size});
    return ch;
  }

  lookup_result lookup(const std::string& name) {
    auto i = channels_.find(name);
    if (i == channels_.end())
      return make_error(errc::unknown_channel,
                        "node '" + spec_.node_name + "' has no channel '"
                          + name + "'; it has: " + display(names()));
    auto& e = i->second;
    return {e.channel, e.type_name, e.capacity, e.max_size};
  }

  bool is_self(const channel_address& where) const {
    auto self = parse_host_port(address_);
    if (!self || self->port != where.port)
      return false;
    return self->host == where.host
           || (is_loopback(self->host) && is_loopback(where.host));
  }

  lookup_result resolve(const std::string& text) {
    auto where = parse_channel_address(text);
    if (!where)
      return std::move(where.error());
    if (is_self(*where))
      return lookup(where->name);
    auto rp = make_response_promise<caf::actor, std::string, uint64_t,
                                    uint64_t>();
    ask_remote(*where, rp, true);
    return rp;
  }

  /// Looks `where` up at its node, dialling it if not connected. A cached
  /// connection that fails is dropped and dialled once more.
  void ask_remote(const channel_address& where,
                  caf::typed_response_promise<caf::actor, std::string, uint64_t,
                                              uint64_t>
                    rp,
                  bool may_retry) {
    auto key = where.node();
    with_remote(
      where,
      [=](const caf::actor& dir, bool fresh) mutable {
        request(dir, spec_.request_timeout, lookup_atom::value, where.name)
          .then(
            [=](caf::actor& ch, std::string& type_name, uint64_t cap,
                uint64_t max_size) mutable {
              rp.deliver(std::move(ch), std::move(type_name), cap, max_size);
            },
            [=](caf::error& err) mutable {
              if (err.category() == errc_category || fresh || !may_retry) {
                rp.deliver(std::move(err));
                return;
              }
              remotes_.erase(key);
              ask_remote(where, rp, false);
            });
      },
      [=](caf::error err) mutable { rp.deliver(std::move(err)); });
  }

  /// Calls `then(directory, fresh)` with the directory of `where`'s node,
  /// dialling the node first if it is not connected (`fresh`); `fail(err)`
  /// if that fails.
  template <class Then, class Fail>
  void with_remote(const channel_address& where, Then then, Fail fail) {
    auto key = where.node();
    if (auto i = remotes_.find(key); i != remotes_.end()) {
      then(i->second, false);
      return;
    }
    auto mm = system().openssl_manager().actor_handle();
    request(mm, spec_.connect_timeout, caf::connect_atom::value, where.host,
            where.port)
      .then(
        [=](caf::node_id&, caf::strong_actor_ptr& ptr,
            std::set<std::string>&) mutable {
          if (!ptr) {
            fail(make_error(errc::connect_failed,
                            key + " is reachable but publishes no netchan "
                                  "directory"));
            return;
          }
          auto dir = caf::actor_cast<caf::actor>(std::move(ptr));
          monitor(dir);
          remotes_[key] = dir;
          send(dir, hello_atom::value, spec_.node_name);
          then(dir, true);
        },
        [=](caf::error& err) mutable { fail(err); });
  }

  /// Connects to the node at "host:port"; answers its channel names.
  caf::result<std::vector<std::string>> dial(const std::string& text) {
    auto where = parse_host_port(text);
    if (!where)
      return std::move(where.error());
    auto rp = make_response_promise<std::vector<std::string>>();
    with_remote(
      *where,
      [=](const caf::actor& dir, bool) mutable {
        request(dir, spec_.request_timeout, list_atom::value)
          .then([=](std::vector<std::string>& names) mutable {
                  rp.deliver(std::move(names));
                },
                [=](caf::error& err) mutable { rp.deliver(err); });
      },
      [=](caf::error err) mutable { rp.deliver(std::move(err)); });
    return rp;
  }

  /// A node dialled us. If its name was last seen on another process, that
  /// process is gone for good: our channels end its sessions now instead of
  /// waiting netchan.resume-timeout for it.
  void hello(const std::string& name) {
    auto sender = current_sender();
    if (!sender || name == "node")
      return;
    auto nid = sender->node();
    auto i = known_nodes_.find(name);
    if (i != known_nodes_.end() && i->second != nid)
      for (auto& [channel_name, e] : channels_)
        send(e.channel, node_gone_atom::value, i->second);
    known_nodes_[name] = nid;
  }

  /// The hosted channels' names; adopted ones ('#') are not listed.
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    for (auto& [name, e] : channels_)
      if (name.front() != '#')
        result.push_back(name);
    return result;
  }

  /// Names for an error message: "a, b", or "(none)".
  static std::string display(const std::vector<std::string>& names) {
    std::string result;
    for (auto& name : names) {
      if (!result.empty())
        result += ", ";
      result += name;
    }
    return result.empty() ? "(none)" : result;
  }

  directory_spec spec_;
  std::string address_;
  std::map<std::string, entry> channels_;
  std::map<std::string, caf::actor> remotes_;
  /// Names of the nodes that dialled us, with their processes.
  std::map<std::string, caf::node_id> known_nodes_;
};

} // namespace

caf::error explain_resolve_error(caf::error err, const std::string& node,
                                 const std::function<std::string()>& diagnose) {
  if (err.category() == errc_category)
    return err;
  auto text = netchan::to_string(err);
  if (err == caf::sec::disconnect_during_handshake)
    return make_error(errc::tls_failed, "TLS handshake with " + node
                                          + " failed: " + diagnose());
  if (text.find("no such host") != std::string::npos)
    return make_error(errc::connect_failed,
                      "unknown host in " + node + ": " + text);
  if (err == caf::sec::cannot_connect_to_node) {
    if (text.find("ip_connect") != std::string::npos)
      return make_error(errc::connect_failed,
                        "cannot connect to " + node
                          + ": connection refused; is a netchan node "
                            "listening there?");
    // A TLS client talking to a plaintext port ends up here.
    return make_error(errc::tls_failed,
                      "cannot connect to " + node + ": " + diagnose());
  }
  if (err == caf::sec::request_timeout)
    return make_error(errc::peer_down,
                      "node " + node + " did not answer in time "
                      "(netchan.connect-timeout / netchan.request-timeout)");
  return make_error(errc::peer_down, "node " + node + " is unreachable: " + text);
}

namespace {

std::mutex local_nodes_mtx;
std::map<caf::actor_system*, local_node> local_nodes;

} // namespace

void link_log::watch(link_watcher w) {
  std::lock_guard<std::mutex> guard{mtx_};
  watchers_.push_back(std::move(w));
}

void link_log::report(const link_event& ev) {
  std::cerr << "netchan: " << to_string(ev) << std::endl;
  std::vector<link_watcher> ws;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    ws = watchers_;
  }
  for (auto& w : ws)
    w(ev);
}

void register_local_node(caf::actor_system& sys, local_node info) {
  std::lock_guard<std::mutex> guard{local_nodes_mtx};
  local_nodes[&sys] = std::move(info);
}

void unregister_local_node(caf::actor_system& sys) {
  std::lock_guard<std::mutex> guard{local_nodes_mtx};
  local_nodes.erase(&sys);
}

std::optional<local_node> find_local_node(caf::actor_system& sys) {
  std::lock_guard<std::mutex> guard{local_nodes_mtx};
  auto i = local_nodes.find(&sys);
  if (i == local_nodes.end())
    return std::nullopt;
  return i->second;
}

caf::actor spawn_directory(caf::actor_system& sys, directory_spec spec) {
  return sys.spawn<directory_actor>(std::move(spec));
}

} // namespace netchan::detail
