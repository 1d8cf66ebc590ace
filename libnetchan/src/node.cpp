// netchan::node: transport set-up (TLS checks, listening) and the thread-side
// entry points to the directory. Connections go through CAF's OpenSSL
// middleman (directory.cpp); automatic connections stay off (they would open
// a plaintext port) and every request has a finite timeout.

#include "netchan/node.hpp"

#include <iostream>
#include <mutex>

#include <caf/openssl/all.hpp>
#include <caf/scoped_actor.hpp>

#include "directory.hpp"
#include "netchan/config.hpp"
#include "netchan/errc.hpp"
#include "tls.hpp"

namespace netchan {

namespace detail {

class node_state {
public:
  node_state(caf::actor_system& sys, const netchan::config& cfg, tls_files tls,
             std::string listen)
    : sys_(sys), cfg_(cfg), tls_(std::move(tls)), listen_(std::move(listen)) {
  }

  ~node_state() {
    shutdown();
  }

  caf::error start() {
    directory_ = spawn_directory(sys_, directory_spec{cfg_.node_name,
                                                      cfg_.connect_timeout,
                                                      cfg_.request_timeout});
    if (!listen_.empty()) {
      auto where = parse_host_port(listen_);
      if (!where)
        return make_error(errc::invalid_config,
                          "netchan.listen: "
                            + netchan::to_string(where.error()));
      if (!tls_.any() && !is_loopback(where->host))
        return make_error(errc::invalid_config,
                          "netchan.insecure=true confines a node to loopback, "
                          "but netchan.listen is "
                            + listen_
                            + "; configure certificates to listen elsewhere");
      // reuse = true: a restarted node can take its port back at once.
      auto port = caf::openssl::publish(directory_, where->port,
                                        where->host.c_str(), true);
      if (!port)
        return make_error(errc::connect_failed,
                          "cannot listen on " + listen_ + ": "
                            + netchan::to_string(port.error()));
      host_ = where->host;
      port_ = *port;
      caf::anon_send(directory_, address_atom::value, address());
    }
    register_local_node(sys_, local_node{directory_,
                                         port_ != 0 ? address() : "",
                                         resolve_timeout()});
    return caf::none;
  }

  void shutdown() {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!directory_)
      return;
    unregister_local_node(sys_);
    if (port_ != 0)
      caf::anon_send(sys_.openssl_manager().actor_handle(),
                     caf::unpublish_atom::value, directory_.address(), port_);
    caf::anon_send_exit(directory_, caf::exit_reason::user_shutdown);
    directory_ = nullptr;
  }

  uint16_t port() const {
    return port_;
  }

  std::string address() const {
    return host_ + ":" + std::to_string(port_);
  }

  caf::expected<endpoint_pair> create(const std::string& name,
                                      const std::string& type_name,
                                      size_t capacity) {
    if (capacity == default_capacity)
      capacity = cfg_.default_capacity;
    auto dir = directory();
    if (!dir)
      return stopped();
    caf::scoped_actor self{sys_};
    caf::expected<endpoint_pair> result{caf::error{}};
    self
      ->request(dir, cfg_.request_timeout, create_atom::value, name, type_name,
                static_cast<uint64_t>(capacity),
                static_cast<uint64_t>(cfg_.max_message_size))
      .receive(
        [&](caf::actor& ch) {
          auto where = port_ != 0 ? address() + "/" + name : std::string{};
          result = make_endpoints(std::move(ch), type_name, capacity,
                                  cfg_.max_message_size, where);
        },
        [&](caf::error& err) { result = std::move(err); });
    return result;
  }

  using resolved = std::tuple<caf::actor, std::string, uint64_t, uint64_t>;

  caf::expected<resolved> resolve(const std::string& where) {
    auto addr = parse_channel_address(where);
    if (!addr)
      return std::move(addr.error());
    auto dir = directory();
    if (!dir)
      return stopped();
    caf::scoped_actor self{sys_};
    caf::expected<resolved> result{caf::error{}};
    self->request(dir, resolve_timeout(), resolve_atom::value, where)
      .receive(
        [&](caf::actor& ch, std::string& type_name, uint64_t capacity,
            uint64_t owner_max) {
          result = resolved{std::move(ch), std::move(type_name), capacity,
                            owner_max};
        },
        [&](caf::error& err) {
          auto diagnose = [&] {
            return diagnose_handshake(addr->host, addr->port, tls_,
                                      std::chrono::milliseconds{2000});
          };
          result = explain_resolve_error(std::move(err), addr->node(),
                                         diagnose);
        });
    return result;
  }

  caf::expected<endpoint_pair> open(const std::string& where,
                                    const std::string& type_name) {
    auto r = resolve(where);
    if (!r)
      return std::move(r.error());
    auto& [ch, remote_type, capacity, owner_max] = *r;
    if (remote_type != type_name)
      return make_error(errc::type_mismatch,
                        "channel " + where + " carries " + remote_type
                          + ", but it was opened as " + type_name);
    return make_endpoints(std::move(ch), type_name, capacity, owner_max,
                          where);
  }

  void adopt(const std::string& id, caf::actor whom,
             const std::string& type_name) {
    if (auto dir = directory())
      caf::anon_send(dir, adopt_atom::value, id, std::move(whom), type_name,
                     uint64_t{0}, static_cast<uint64_t>(cfg_.max_message_size));
  }

  std::vector<std::string> channels() {
    std::vector<std::string> result;
    auto dir = directory();
    if (!dir)
      return result;
    caf::scoped_actor self{sys_};
    self->request(dir, cfg_.request_timeout, list_atom::value)
      .receive(
        [&](const std::string& names) {
          if (names == "(none)")
            return;
          size_t pos = 0;
          for (;;) {
            auto comma = names.find(", ", pos);
            result.push_back(names.substr(pos, comma - pos));
            if (comma == std::string::npos)
              break;
            pos = comma + 2;
          }
        },
        [](caf::error&) {});
    return result;
  }

private:
  caf::actor directory() {
    std::lock_guard<std::mutex> guard{mtx_};
    return directory_;
  }

  /// A resolution may dial (connect-timeout) and then ask (request-timeout).
  caf::timespan resolve_timeout() const {
    return cfg_.connect_timeout + 2 * cfg_.request_timeout;
  }

  caf::error stopped() const {
    return make_error(errc::shut_down, "this netchan node was shut down");
  }

  caf::expected<endpoint_pair> make_endpoints(caf::actor ch,
                                              const std::string& type_name,
                                              size_t capacity,
                                              size_t owner_max,
                                              const std::string& where) {
    auto make = [&] {
      return std::make_shared<const endpoint>(sys_, ch, nullptr, type_name,
                                              capacity, cfg_.max_message_size,
                                              where, owner_max);
    };
    return endpoint_pair{make(), make()};
  }

  caf::actor_system& sys_;
  const netchan::config& cfg_;
  tls_files tls_;
  std::string listen_;
  std::mutex mtx_;
  caf::actor directory_;
  std::string host_ = "127.0.0.1";
  uint16_t port_ = 0;
};

} // namespace detail

caf::expected<node> node::start(caf::actor_system& sys) {
  auto cfg = dynamic_cast<const netchan::config*>(&sys.config());
  if (cfg == nullptr)
    return make_error(errc::invalid_config,
                      "a netchan node needs an actor system made from a "
                      "netchan::config");
  return start(sys, cfg->listen);
}

caf::expected<node> node::start(caf::actor_system& sys,
                                const std::string& listen) {
  auto cfg = dynamic_cast<const netchan::config*>(&sys.config());
  if (cfg == nullptr)
    return make_error(errc::invalid_config,
                      "a netchan node needs an actor system made from a "
                      "netchan::config");
  detail::tls_files tls{cfg->openssl_certificate, cfg->openssl_key,
                        cfg->openssl_passphrase, cfg->openssl_cafile,
                        cfg->openssl_capath};
  if (tls.any()) {
    if (auto err = detail::validate_tls(tls))
      return err;
  } else if (!cfg->insecure) {
    return make_error(errc::invalid_config,
                      "no certificates configured: set openssl.certificate, "
                      "openssl.key and openssl.cafile (run "
                      "config/make-dev-certs.sh to create dev certificates), "
                      "or set netchan.insecure=true for a loopback-only node "
                      "without authentication");
  } else {
    std::cerr << "netchan: WARNING: node '" << cfg->node_name
              << "' runs INSECURE (netchan.insecure=true): anonymous TLS, no "
                 "authentication, loopback only\n";
  }
  if (!detail::openssl_error_queue_fix_active())
    std::cerr << "netchan: WARNING: the OpenSSL error-queue fix is not "
                 "active (libnetchan loaded after libssl?): a peer killed "
                 "without TLS shutdown may drop healthy connections\n";
  auto state = std::make_shared<detail::node_state>(sys, *cfg, std::move(tls),
                                                    listen);
  if (auto err = state->start())
    return err;
  return node{sys, std::move(state)};
}

uint16_t node::port() const noexcept {
  return state_->port();
}

std::string node::address() const {
  return state_->address();
}

std::vector<std::string> node::channels() const {
  return state_->channels();
}

void node::shutdown() {
  state_->shutdown();
}

void node::adopt(const std::string& id, caf::actor whom,
                 const std::string& type_name) {
  state_->adopt(id, std::move(whom), type_name);
}

caf::expected<std::tuple<caf::actor, std::string, uint64_t, uint64_t>>
node::resolve(const std::string& where) {
  return state_->resolve(where);
}

caf::expected<detail::endpoint_pair>
node::create_impl(const std::string& name, const std::string& type_name,
                  size_t capacity) {
  return state_->create(name, type_name, capacity);
}

caf::expected<detail::endpoint_pair>
node::open_impl(const std::string& where, const std::string& type_name) {
  return state_->open(where, type_name);
}

} // namespace netchan
