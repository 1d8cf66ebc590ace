// netchan::node: transport set-up (TLS checks, listening) and the thread-side
// entry points to the directory. Connections go through CAF's OpenSSL
// middleman (directory.cpp); automatic connections stay off (they would open
// a plaintext port) and every request has a finite timeout.

#include "netchan/node.hpp"

#include <cerrno>
#include <cstring>
#include <cerrno>
#include <cstring>
#include <iostream>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <mutex>
#include <thread>

#include <sys/resource.h>

#include <caf/openssl/all.hpp>
#include <caf/scoped_actor.hpp>

#include "node/directory.hpp"
#include "node/node_access.hpp"
#include "netchan/config.hpp"
#include "netchan/errc.hpp"
#include "transport/tls.hpp"

namespace netchan {

namespace detail {

/// Why listening on host:port failed: CAF 0.17 says only "tcp socket
/// creation failed", so try the bind ourselves to name the cause.
std::string why_no_listen(const std::string& host, uint16_t port,
                          const caf::error& err) {
  auto caf_says = netchan::to_string(err);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (port == 0 || ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    return caf_says;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return caf_says;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  auto rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  auto bind_errno = errno;
  ::close(fd);
  if (rc == 0)
    return caf_says;
  if (bind_errno == EADDRINUSE)
    return "port " + std::to_string(port)
           + " is in use by another process; stop it, or pick another port "
             "in netchan.listen (port 0 picks a free one)";
  if (bind_errno == EADDRNOTAVAIL)
    return host + " is not an address of this machine";
  if (bind_errno == EACCES)
    return "port " + std::to_string(port)
           + " needs privileges; pick a port above 1023";
  return std::string{std::strerror(bind_errno)} + " (" + caf_says + ")";
}

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
                                                      cfg_.request_timeout,
                                                      cfg_.resume_timeout,
                                                      links_});
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
                            + why_no_listen(where->host, where->port,
                                            port.error()));
      host_ = where->host;
      port_ = *port;
      caf::anon_send(directory_, address_atom::value, address());
    }
    register_local_node(sys_, local_node{directory_,
                                         port_ != 0 ? address() : "",
                                         resolve_timeout(),
                                         cfg_.resume_timeout,
                                         cfg_.reconnect_initial,
                                         cfg_.reconnect_max, links_});
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

  caf::expected<resolved_channel> resolve(const std::string& where) {
    auto addr = parse_channel_address(where);
    if (!addr)
      return std::move(addr.error());
    auto dir = directory();
    if (!dir)
      return stopped();
    caf::scoped_actor self{sys_};
    caf::expected<resolved_channel> result{caf::error{}};
    self->request(dir, resolve_timeout(), resolve_atom::value, where)
      .receive(
        [&](caf::actor& ch, std::string& type_name, uint64_t capacity,
            uint64_t owner_max) {
          result = resolved_channel{std::move(ch), std::move(type_name),
                                    capacity, owner_max};
        },
        [&](caf::error& err) { result = explain(std::move(err), *addr); });
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

  caf::expected<std::vector<std::string>> dial(const std::string& host_port) {
    auto addr = parse_host_port(host_port);
    if (!addr)
      return std::move(addr.error());
    auto dir = directory();
    if (!dir)
      return stopped();
    caf::scoped_actor self{sys_};
    caf::expected<std::vector<std::string>> result{caf::error{}};
    self->request(dir, resolve_timeout(), dial_atom::value, host_port)
      .receive([&](std::vector<std::string>& names) {
                 result = std::move(names);
               },
               [&](caf::error& err) {
                 result = explain(std::move(err), *addr);
               });
    return result;
  }

  /// Hosts the channels of netchan.channels ("NAME:TYPE:CAPACITY").
  caf::error host_configured() {
    for (auto& spec : cfg_.channels) {
      auto first = spec.find(':');
      auto last = spec.rfind(':');
      auto bad = [&](const std::string& why) {
        return make_error(errc::invalid_config,
                          "netchan.channels entry \"" + spec + "\" " + why
                            + "; write \"NAME:TYPE:CAPACITY\", e.g. "
                              "\"jobs:@i32:0\"");
      };
      if (first == std::string::npos || first == last || first == 0)
        return bad("is not NAME:TYPE:CAPACITY");
      auto name = spec.substr(0, first);
      auto type_name = spec.substr(first + 1, last - first - 1);
      auto digits = spec.substr(last + 1);
      if (digits.empty() || digits.size() > 9
          || digits.find_first_not_of("0123456789") != std::string::npos)
        return bad("has no capacity (a whole number) after the last ':'");
      if (!sys_.types().make_value(type_name))
        return bad("names type '" + type_name
                   + "', which this program did not register (builtin "
                     "names look like @i32, @u64, @str)");
      auto made = create(name, type_name, std::stoul(digits));
      if (!made)
        return bad("cannot be hosted: " + netchan::to_string(made.error()));
    }
    return caf::none;
  }

  /// Dials every peer of netchan.peers, retrying with backoff (100 ms
  /// doubling to 2 s) until netchan.peer-wait has passed.
  caf::error dial_peers() {
    for (auto& peer : cfg_.peers) {
      auto deadline = std::chrono::steady_clock::now() + cfg_.peer_wait;
      auto pause = std::chrono::milliseconds{100};
      for (size_t attempt = 1;; ++attempt) {
        auto names = dial(peer);
        if (names)
          break;
        auto& err = names.error();
        // A peer that answers and refuses us will not change its mind.
        if (is(err, errc::tls_failed) || is(err, errc::invalid_argument)
            || std::chrono::steady_clock::now() + pause >= deadline)
          return make_error(errc::connect_failed,
                            "peer " + peer + " of node '" + cfg_.node_name
                              + "' is unreachable: " + std::to_string(attempt)
                              + " attempt(s) within netchan.peer-wait = "
                              + std::to_string(std::chrono::duration_cast<
                                                 std::chrono::milliseconds>(
                                                 cfg_.peer_wait)
                                                 .count())
                              + " ms; the last said: " + netchan::to_string(err));
        std::this_thread::sleep_for(pause); // backoff between dial attempts
        pause = std::min(pause * 2, std::chrono::milliseconds{2000});
      }
    }
    return caf::none;
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
      .receive([&](std::vector<std::string>& names) {
                 result = std::move(names);
               },
               [](caf::error&) {});
    return result;
  }

  void watch_links(link_watcher w) {
    links_->watch(std::move(w));
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

  /// A connection error to `addr`'s node, with what to fix; a failed TLS
  /// handshake is diagnosed by handshaking once more, with OpenSSL alone.
  caf::error explain(caf::error err, const channel_address& addr) const {
    auto diagnose = [&] {
      return diagnose_handshake(addr.host, addr.port, tls_,
                                std::chrono::milliseconds{2000});
    };
    return explain_resolve_error(std::move(err), addr.node(), diagnose);
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
  link_log_ptr links_ = std::make_shared<link_log>();
  tls_files tls_;
  std::string listen_;
  std::mutex mtx_;
  caf::actor directory_;
  std::string host_ = "127.0.0.1";
  uint16_t port_ = 0;
};

} // namespace detail

namespace {

/// Raises the soft limit on open files to the hard limit, once per process:
/// CAF 0.17 times out no half-open connection (netchan cuts unfinished TLS
/// handshakes only after netchan.connect-timeout; see README, "Limits"), so
/// a burst of them holds a descriptor each, and Linux's usual soft limit of
/// 1024 is soon reached. Warns if it cannot.
void raise_open_file_limit() {
  static std::once_flag once;
  std::call_once(once, [] {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max)
      return;
    auto soft = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0)
      std::cerr << "netchan: WARNING: cannot raise the open-file limit from "
                << soft << " to " << lim.rlim_max << " ("
                << std::strerror(errno)
                << "): silent connections may exhaust it\n";
  });
}

} // namespace

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
  raise_open_file_limit();
  // A peer gets as long to finish a TLS handshake with us as we would take
  // to connect to it; then the connection is cut (CAF would keep it forever).
  using std::chrono::milliseconds;
  detail::limit_tls_handshakes(
    std::chrono::duration_cast<milliseconds>(cfg->connect_timeout));
  auto state = std::make_shared<detail::node_state>(sys, *cfg, std::move(tls),
                                                    listen);
  if (auto err = state->start())
    return err;
  if (auto err = state->host_configured())
    return err;
  if (auto err = state->dial_peers())
    return err;
  return node{sys, std::move(state)};
}

uint16_t node::port() const noexcept {
  return state_->port();
}

std::string node::address() const {
  return state_->address();
}

caf::expected<std::vector<std::string>>
node::dial(const std::string& host_port) {
  return state_->dial(host_port);
}

std::vector<std::string> node::channels() const {
  return state_->channels();
}

void node::watch_links(link_watcher watcher) {
  state_->watch_links(std::move(watcher));
}

void node::shutdown() {
  state_->shutdown();
}

namespace detail {

caf::expected<endpoint_pair> create_endpoints(node& n, const std::string& name,
                                              const std::string& type_name,
                                              size_t capacity) {
  return node_access::state(n).create(name, type_name, capacity);
}

caf::expected<endpoint_pair> open_endpoints(node& n, const std::string& where,
                                            const std::string& type_name) {
  return node_access::state(n).open(where, type_name);
}

void node_access::adopt(node& n, const std::string& id, caf::actor whom,
                        const std::string& type_name) {
  state(n).adopt(id, std::move(whom), type_name);
}

caf::expected<resolved_channel> node_access::resolve(node& n,
                                                     const std::string& where) {
  return state(n).resolve(where);
}

} // namespace detail

} // namespace netchan
