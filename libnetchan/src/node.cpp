// netchan::node: transport set-up (TLS checks, listening), the directory,
// and opening channels on other nodes. Connections go through CAF's OpenSSL
// middleman; automatic connections stay off (they would open a plaintext
// port) and every request made here has a finite timeout.

#include "netchan/node.hpp"

#include <iostream>
#include <map>
#include <mutex>
#include <optional>

#include <caf/event_based_actor.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/openssl/all.hpp>
#include <caf/scoped_actor.hpp>

#include "channel_actor.hpp"
#include "directory.hpp"
#include "netchan/config.hpp"
#include "netchan/errc.hpp"
#include "tls.hpp"

namespace netchan {

namespace detail {

namespace {

struct host_port {
  std::string host;
  uint16_t port = 0;
};

/// Parses "host:port" (IPv6 hosts in brackets).
caf::expected<host_port> parse_host_port(const std::string& text) {
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
  auto digits = text.substr(colon + 1);
  if (digits.find_first_not_of("0123456789") != std::string::npos
      || digits.size() > 5)
    return bad();
  auto port = std::stoul(digits);
  if (port > 65535)
    return bad();
  return host_port{host, static_cast<uint16_t>(port)};
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1"
         || host.compare(0, 4, "127.") == 0;
}

std::string describe(const host_port& hp) {
  return hp.host + ":" + std::to_string(hp.port);
}

/// Directories of other nodes, by "host:port". An entry goes when its node
/// does (its proxy's down message), so that a restarted node is dialled
/// afresh instead of asked through a dead proxy until a timeout.
class remote_directories {
public:
  std::optional<caf::actor> find(const std::string& key) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = entries_.find(key);
    if (i == entries_.end())
      return std::nullopt;
    return i->second;
  }

  void add(const std::string& key, caf::actor dir) {
    std::lock_guard<std::mutex> guard{mtx_};
    entries_[key] = std::move(dir);
  }

  void forget(const std::string& key) {
    std::lock_guard<std::mutex> guard{mtx_};
    entries_.erase(key);
  }

  void forget(const caf::actor_addr& dir) {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto i = entries_.begin(); i != entries_.end();)
      i = i->second.address() == dir ? entries_.erase(i) : std::next(i);
  }

  void clear() {
    std::lock_guard<std::mutex> guard{mtx_};
    entries_.clear();
  }

private:
  std::mutex mtx_;
  std::map<std::string, caf::actor> entries_;
};

using watch_atom = caf::atom_constant<caf::atom("nc_watch")>;

/// Monitors remote directories and drops them from the cache when they go.
caf::behavior directory_watcher(caf::event_based_actor* self,
                                std::shared_ptr<remote_directories> cache) {
  self->set_down_handler(
    [cache](caf::down_msg& msg) { cache->forget(msg.source); });
  return {
    [self](watch_atom, const caf::actor& dir) { self->monitor(dir); },
  };
}

} // namespace

class node_state {
public:
  node_state(caf::actor_system& sys, const netchan::config& cfg, tls_files tls)
    : sys_(sys), cfg_(cfg), tls_(std::move(tls)) {
  }

  ~node_state() {
    shutdown();
  }

  caf::error start() {
    directory_ = spawn_directory(sys_, cfg_.node_name);
    watcher_ = sys_.spawn(directory_watcher, remote_);
    if (cfg_.listen.empty())
      return caf::none;
    auto where = parse_host_port(cfg_.listen);
    if (!where)
      return make_error(errc::invalid_config, "netchan.listen: "
                                                + netchan::to_string(
                                                  where.error()));
    if (!tls_.any() && !is_loopback(where->host))
      return make_error(errc::invalid_config,
                        "netchan.insecure=true confines a node to loopback, "
                        "but netchan.listen is " + cfg_.listen
                          + "; configure certificates to listen elsewhere");
    auto port = caf::openssl::publish(directory_, where->port,
                                      where->host.c_str(), false);
    if (!port)
      return make_error(errc::connect_failed,
                        "cannot listen on " + cfg_.listen + ": "
                          + netchan::to_string(port.error()));
    host_ = where->host;
    port_ = *port;
    return caf::none;
  }

  void shutdown() {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!directory_)
      return;
    if (port_ != 0)
      caf::anon_send(sys_.openssl_manager().actor_handle(),
                     caf::unpublish_atom::value, directory_.address(), port_);
    caf::anon_send_exit(directory_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(watcher_, caf::exit_reason::user_shutdown);
    directory_ = nullptr;
    watcher_ = nullptr;
    remote_->clear();
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
          result = make_endpoints(std::move(ch), type_name, capacity);
        },
        [&](caf::error& err) { result = std::move(err); });
    return result;
  }

  caf::expected<endpoint_pair> open(const std::string& where,
                                    const std::string& type_name) {
    auto slash = where.rfind('/');
    if (slash == std::string::npos || slash + 1 == where.size())
      return make_error(errc::invalid_argument,
                        "'" + where + "' is not host:port/name");
    auto name = where.substr(slash + 1);
    auto hp = parse_host_port(where.substr(0, slash));
    if (!hp)
      return std::move(hp.error());
    // A cached connection may belong to a node that just died (its down
    // message not yet seen): on a transport error, dial once more.
    caf::expected<endpoint_pair> result{caf::error{}};
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto dir = directory_of(*hp);
      if (!dir)
        return std::move(dir.error());
      caf::error transport_error;
      caf::scoped_actor self{sys_};
      self->request(*dir, cfg_.request_timeout, lookup_atom::value, name)
        .receive(
          [&](caf::actor& ch, std::string& remote_type, uint64_t capacity) {
            if (remote_type != type_name)
              result = make_error(errc::type_mismatch,
                                  "channel " + where + " carries "
                                    + remote_type + ", but it was opened as "
                                    + type_name);
            else
              result = make_endpoints(std::move(ch), type_name, capacity);
          },
          [&](caf::error& err) {
            if (err.category() == errc_category)
              result = std::move(err);
            else
              transport_error = std::move(err);
          });
      if (!transport_error)
        return result;
      forget(*hp);
      result = lookup_error(std::move(transport_error), *hp);
    }
    return result;
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
          while (pos <= names.size()) {
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

  caf::error stopped() const {
    return make_error(errc::shut_down, "this netchan node was shut down");
  }

  caf::expected<endpoint_pair> make_endpoints(caf::actor ch,
                                              const std::string& type_name,
                                              size_t capacity) {
    auto tx = std::make_shared<const endpoint>(sys_, ch, nullptr, type_name,
                                               capacity, cfg_.max_message_size);
    auto rx = std::make_shared<const endpoint>(sys_, ch, nullptr, type_name,
                                               capacity, cfg_.max_message_size);
    return endpoint_pair{std::move(tx), std::move(rx)};
  }

  /// The directory at `hp`: this node's own, a cached connection, or a new
  /// one through the OpenSSL middleman with connect-timeout.
  caf::expected<caf::actor> directory_of(const host_port& hp) {
    auto key = describe(hp);
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (!directory_)
        return stopped();
      if (port_ != 0 && hp.port == port_
          && (hp.host == host_ || (is_loopback(hp.host) && is_loopback(host_))))
        return directory_;
    }
    if (auto cached = remote_->find(key))
      return *cached;
    caf::scoped_actor self{sys_};
    caf::expected<caf::actor> result{caf::error{}};
    self
      ->request(sys_.openssl_manager().actor_handle(), cfg_.connect_timeout,
                caf::connect_atom::value, hp.host, hp.port)
      .receive(
        [&](caf::node_id&, caf::strong_actor_ptr& ptr,
            std::set<std::string>&) {
          if (!ptr)
            result = make_error(errc::connect_failed,
                                key + " is reachable but publishes no netchan "
                                      "directory");
          else
            result = caf::actor_cast<caf::actor>(std::move(ptr));
        },
        [&](caf::error& err) { result = connect_error(std::move(err), hp); });
    if (result) {
      remote_->add(key, *result);
      caf::anon_send(watcher_, watch_atom::value, *result);
    }
    return result;
  }

  void forget(const host_port& hp) {
    remote_->forget(describe(hp));
  }

  /// Turns CAF's connection errors into sentences that say what to fix.
  caf::error connect_error(caf::error err, const host_port& hp) {
    auto where = describe(hp);
    auto text = netchan::to_string(err);
    if (err == caf::sec::disconnect_during_handshake) {
      auto why = diagnose_handshake(hp.host, hp.port, tls_,
                                    std::chrono::milliseconds{2000});
      return make_error(errc::tls_failed,
                        "TLS handshake with " + where + " failed: " + why);
    }
    if (text.find("no such host") != std::string::npos)
      return make_error(errc::connect_failed,
                        "unknown host '" + hp.host + "' (in " + where + ")");
    if (err == caf::sec::cannot_connect_to_node) {
      if (text.find("ip_connect") != std::string::npos)
        return make_error(errc::connect_failed,
                          "cannot connect to " + where
                            + ": connection refused; is a netchan node "
                              "listening there?");
      // A TLS client talking to a plaintext port ends up here.
      auto why = diagnose_handshake(hp.host, hp.port, tls_,
                                    std::chrono::milliseconds{2000});
      return make_error(errc::tls_failed,
                        "cannot connect to " + where + ": " + why);
    }
    if (err == caf::sec::request_timeout)
      return make_error(errc::connect_failed,
                        "no answer from " + where + " within "
                          "netchan.connect-timeout");
    return make_error(errc::connect_failed,
                      "cannot connect to " + where + ": " + text);
  }

  caf::error lookup_error(caf::error err, const host_port& hp) {
    if (err == caf::sec::request_timeout)
      return make_error(errc::peer_down,
                        "node " + describe(hp)
                          + " did not answer within netchan.request-timeout");
    return make_error(errc::peer_down, "node " + describe(hp)
                                         + " is gone: "
                                         + netchan::to_string(err));
  }

  caf::actor_system& sys_;
  const netchan::config& cfg_;
  tls_files tls_;
  std::mutex mtx_;
  caf::actor directory_;
  std::string host_ = "127.0.0.1";
  uint16_t port_ = 0;
  caf::actor watcher_;
  std::shared_ptr<remote_directories> remote_
    = std::make_shared<remote_directories>();
};

} // namespace detail

caf::expected<node> node::start(caf::actor_system& sys) {
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
  auto state = std::make_shared<detail::node_state>(sys, *cfg, std::move(tls));
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
