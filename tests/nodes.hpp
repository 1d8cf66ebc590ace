#pragma once

// Nodes for multi-process suites: a node in the test process, a peer process
// (tests/peer.cpp), and a throw-away PKI whose certificates both present.

#include <csignal>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <caf/actor_system.hpp>

#include "certs.hpp"
#include "job.hpp"
#include "netchan/netchan.hpp"
#include "process.hpp"

namespace test {

struct node_config : netchan::config {
  node_config() {
    add_test_types(*this);
  }
};

/// One node in the test process: an actor system and its netchan node.
/// `Config` registers the types this process knows.
template <class Config = node_config>
struct basic_local_node {
  Config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::optional<netchan::node> node;
  caf::error start_error;

  explicit basic_local_node(std::vector<std::string> args) {
    if (auto err = cfg.load(std::move(args))) {
      start_error = err;
      return;
    }
    sys = std::make_unique<caf::actor_system>(cfg);
    auto n = netchan::node::start(*sys);
    if (n)
      node.emplace(std::move(*n));
    else
      start_error = n.error();
  }

  ~basic_local_node() {
    if (node)
      node->shutdown();
    node.reset();
  }

  netchan::node& get() {
    if (!node)
      BOOST_FAIL("node did not start: " << netchan::to_string(start_error));
    return *node;
  }

  std::string where(const std::string& name) {
    return get().address() + "/" + name;
  }

  /// Opens the channel at `where`, or fails the test.
  template <class T>
  std::pair<netchan::sender<T>, netchan::receiver<T>>
  open(const std::string& where) {
    auto ch = get().template open<T>(where);
    if (!ch)
      BOOST_FAIL("open " << where << ": " << netchan::to_string(ch.error()));
    return *ch;
  }
};

using local_node = basic_local_node<>;

/// Runs netchan-test-peer in `mode` with its own arguments, then "--" and
/// the node's configuration arguments; `env` adds "NAME=VALUE" variables.
inline std::unique_ptr<child>
start_peer(const std::string& mode, std::vector<std::string> own,
           const std::vector<std::string>& config,
           const std::vector<std::string>& env = {}) {
  own.insert(own.begin(), mode);
  own.push_back("--");
  own.insert(own.end(), config.begin(), config.end());
  return std::make_unique<child>(NETCHAN_TEST_PEER, own, env);
}

/// A peer process serving channels; `where(name)` is its channel's address.
struct peer {
  std::unique_ptr<child> proc;
  uint16_t port = 0;

  peer(std::vector<std::string> own, const std::vector<std::string>& config,
       const std::vector<std::string>& env = {}) {
    proc = start_peer("serve", std::move(own), config, env);
    auto ready = proc->wait_for("ready port=", std::chrono::seconds{30});
    if (!ready)
      BOOST_FAIL("peer did not start: " << proc->transcript());
    port = static_cast<uint16_t>(std::stoul(*ready));
  }

  ~peer() {
    proc->close_stdin();
    auto status = proc->wait(std::chrono::seconds{30});
    if (status != 0 && status != 128 + SIGKILL)
      BOOST_ERROR("peer ended with status " << status << ": "
                                            << proc->transcript());
  }

  std::string where(const std::string& name) const {
    return "127.0.0.1:" + std::to_string(port) + "/" + name;
  }

  pid_t pid() const {
    return proc->pid();
  }

  bool alive() const {
    return !proc->try_wait();
  }
};

/// A CA and two node certificates from it, in a directory removed after.
struct cluster {
  ::pki::temp_dir dir;
  test::pki pki{dir.path(), "cluster-ca"};
  node_certs server = pki.issue("server");
  node_certs client = pki.issue("client");
  /// Options every node of the suite gets (e.g. a short resume window).
  std::vector<std::string> extra;

  std::vector<std::string> listen_args(uint16_t port = 0) const {
    auto args = server.args();
    args.push_back("--netchan.listen=127.0.0.1:" + std::to_string(port));
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::vector<std::string> client_args() const {
    auto args = client.args();
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

template <class T>
std::pair<netchan::sender<T>, netchan::receiver<T>>
open_or_fail(netchan::node& n, const std::string& where) {
  auto ch = n.open<T>(where);
  if (!ch)
    BOOST_FAIL("open " << where << ": " << netchan::to_string(ch.error()));
  return *ch;
}

/// However a test ends, a thread looping on a channel stops: closing the
/// channel through `tx` ends its loop, then the thread is joined.
template <class T>
struct close_and_join {
  netchan::sender<T> tx;
  std::thread& t;
  ~close_and_join() {
    static_cast<void>(tx.close());
    t.join();
  }
};

} // namespace test
