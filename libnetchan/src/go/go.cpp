// listen/dial: the Go library's shape on netchan's channels.
//
// The listener's node hosts "netchan.in", the channel every client sends
// into. Each dialer makes a local inbox channel and says hello to the
// listener with its inbox's channel actor and its sender id (which the
// listener sees on every value the client sends, so receive_from can name
// it). The listener keeps one sender endpoint per client inbox. `send`
// first looks for a client whose endpoint holds credit (slots its inbox
// reserved for the listener): the value goes on that credit, with no
// message of its own and no wait, batched with the next ones. If none
// holds any, it waits on the next client in turn for a short while:
// waiting asks that inbox for a window of credit, which the sends after it
// use. If that client's inbox stays full (it does not read), the send is
// withdrawn (the value stays with `send`) and the next client gets a turn,
// so a client that stops reading holds its inbox's values but never wedges
// the listener while another one reads. `reply` sends to one. A client
// that leaves makes its endpoint fail with peer_down: the value comes back
// and the client is dropped, so nothing wedges. If it left after its inbox
// may have taken the value, `send` reports errc::outcome_unknown (value
// back, possibly delivered) instead of sending it again. The hello travels
// over the connection the client made, so clients need not listen themselves.

#include "netchan/go.hpp"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>

#include "netchan/config.hpp"
#include "netchan/errc.hpp"
#include "node/directory.hpp"
#include "node/node_access.hpp"
#include "wire/protocol.hpp"

namespace netchan::detail {

namespace {

/// Where a listener's hello actor is found: hidden ('#'), never listed.
constexpr const char* hello_name = "#netchan.hello";
constexpr const char* hello_type = "netchan.hello";
constexpr const char* inbox_name = "netchan.in";

/// How long `send` waits on one client with no credit before it gives the
/// next one a turn. A client that reads gets a slot within a round trip or
/// two (well under a millisecond on loopback, a few on a loaded machine);
/// this bounds what a client that stopped reading costs each send.
constexpr caf::timespan turn = std::chrono::milliseconds{10};

} // namespace

class listener_state {
public:
  listener_state(caf::actor_system& sys, netchan::node n,
                 std::string type_name, endpoint_ptr inbox)
    : sys_(sys), node_(std::move(n)), type_name_(std::move(type_name)),
      max_size_(max_message_size_of(sys)), inbox_(std::move(inbox)) {
  }

  ~listener_state() {
    caf::anon_send_exit(hello_, caf::exit_reason::user_shutdown);
    node_.shutdown();
  }

  void set_hello(caf::actor hello) {
    hello_ = std::move(hello);
  }

  void add_client(client_id id, caf::actor inbox, uint64_t capacity) {
    auto ep = std::make_shared<const endpoint>(sys_, std::move(inbox), nullptr,
                                               type_name_, capacity, max_size_);
    {
      std::lock_guard<std::mutex> guard{mtx_};
      clients_[id] = std::move(ep);
    }
    cv_.notify_all();
  }

  void remove_client(client_id id) {
    std::lock_guard<std::mutex> guard{mtx_};
    clients_.erase(id);
  }

  caf::error send(payload&& bytes) {
    envelope value;
    value.bytes = std::move(bytes);
    for (;;) {
      auto ring = snapshot();
      // A client whose endpoint holds credit takes it now: no round trip.
      for (auto& [id, ep] : ring)
        if (ep->try_credit(value))
          return caf::none;
      // None does: wait for the next one's turn. If it leaves, the value
      // comes back (peer_down) and the loop tries the others; if its inbox
      // stays full, the send is withdrawn (timeout) and the next one's turn
      // comes. The credit it asked for still arrives for later sends.
      auto& [id, ep] = ring.front();
      auto err = put(*ep, value.bytes, true, turn);
      if (!err)
        return caf::none;
      drop(id, err);
      if (is(err, errc::outcome_unknown))
        return err; // may have arrived: sending it again could duplicate
    }
  }

  caf::error reply(client_id to, payload&& bytes) {
    endpoint_ptr ep;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (auto i = clients_.find(to); i != clients_.end())
        ep = i->second;
    }
    if (!ep)
      return make_error(errc::peer_down,
                        "client " + std::to_string(to)
                          + " is not connected (it left, or never dialled)");
    auto err = put(*ep, bytes, true);
    if (err)
      drop(to, err);
    return err;
  }

  size_t clients() {
    std::lock_guard<std::mutex> guard{mtx_};
    return clients_.size();
  }

  netchan::node& node() {
    return node_;
  }

  const endpoint_ptr& inbox() const {
    return inbox_;
  }

private:
  static caf::error put(const endpoint& ep, const payload& bytes,
                        bool may_park, caf::timespan timeout = no_deadline) {
    op_request req;
    req.kind = op_kind::put;
    req.value.bytes = bytes;
    req.may_park = may_park;
    req.timeout = timeout;
    return ep.call(std::move(req)).err;
  }

  /// The clients, starting after the last one used (round robin); waits
  /// until at least one is connected.
  std::vector<std::pair<client_id, endpoint_ptr>> snapshot() {
    std::unique_lock<std::mutex> guard{mtx_};
    cv_.wait(guard, [this] { return !clients_.empty(); });
    std::vector<std::pair<client_id, endpoint_ptr>> ring(clients_.begin(),
                                                         clients_.end());
    std::rotate(ring.begin(), ring.begin() + (next_++ % ring.size()),
                ring.end());
    return ring;
  }

  /// A client whose inbox refused a value for any reason but "full" is gone
  /// (left, closed its inbox, or unreachable): it gets no more values.
  void drop(client_id id, const caf::error& why) {
    if (is(why, errc::would_block) || is(why, errc::timeout))
      return;
    std::lock_guard<std::mutex> guard{mtx_};
    clients_.erase(id);
  }

  caf::actor_system& sys_;
  netchan::node node_;
  std::string type_name_;
  size_t max_size_;
  endpoint_ptr inbox_;
  caf::actor hello_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::map<client_id, endpoint_ptr> clients_;
  size_t next_ = 0;
};

caf::expected<std::shared_ptr<listener_state>>
start_listener(caf::actor_system& sys, const std::string& address,
               const std::string& type_name, size_t capacity) {
  auto n = netchan::node::start(sys, address);
  if (!n)
    return std::move(n.error());
  auto in = create_endpoints(*n, inbox_name, type_name, capacity);
  if (!in)
    return std::move(in.error());
  auto st = std::make_shared<listener_state>(sys, *n, type_name,
                                             std::move(in->second));
  std::weak_ptr<listener_state> weak = st;
  auto hello = sys.spawn([weak](caf::event_based_actor* self)
                           -> caf::behavior {
    // A client whose inbox goes down (its process ended, the link broke) is
    // dropped now: while other clients hold credit, no send of the
    // listener's may try it and fail for a long time.
    auto inboxes = std::make_shared<std::map<caf::actor_addr, client_id>>();
    self->set_down_handler([weak, inboxes](caf::down_msg& msg) {
      auto i = inboxes->find(msg.source);
      if (i == inboxes->end())
        return;
      if (auto st = weak.lock())
        st->remove_client(i->second);
      inboxes->erase(i);
    });
    return {
      [weak, self, inboxes](go_hello_atom, caf::actor& inbox,
                            uint64_t client,
                            uint64_t capacity) -> caf::result<ok_atom> {
        auto st = weak.lock();
        if (!st)
          return make_error(errc::shut_down, "the listener was shut down");
        self->monitor(inbox);
        (*inboxes)[inbox.address()] = client;
        st->add_client(client, std::move(inbox), capacity);
        return ok_atom::value;
      },
    };
  });
  st->set_hello(hello);
  node_access::adopt(*n, hello_name, hello, hello_type);
  return st;
}

endpoint_ptr listener_inbox(listener_state& st) {
  return st.inbox();
}

caf::error listener_send(listener_state& st, payload&& bytes) {
  return st.send(std::move(bytes));
}

caf::error listener_reply(listener_state& st, client_id to,
                          payload&& bytes) {
  return st.reply(to, std::move(bytes));
}

size_t listener_clients(listener_state& st) {
  return st.clients();
}

netchan::node& listener_node(listener_state& st) {
  return st.node();
}

caf::expected<dialed> dial_listener(caf::actor_system& sys,
                                    const std::string& address,
                                    const std::string& type_name,
                                    size_t capacity) {
  auto n = netchan::node::start(sys);
  if (!n)
    return std::move(n.error());
  auto hello = node_access::resolve(*n, address + "/" + hello_name);
  if (!hello)
    return std::move(hello.error());
  if (std::get<1>(*hello) != hello_type)
    return make_error(errc::unknown_channel,
                      address + " is a netchan node, but no listener");
  auto out = open_endpoints(*n, address + "/" + inbox_name, type_name);
  if (!out)
    return std::move(out.error());
  auto inbox = make_local_channel(sys, type_name, capacity, "inbox");
  if (!inbox)
    return std::move(inbox.error());
  auto& [inbox_tx, inbox_rx] = *inbox;
  caf::scoped_actor self{sys};
  caf::error err;
  auto timeout = std::chrono::seconds{10};
  if (auto cfg = dynamic_cast<const netchan::config*>(&sys.config()))
    timeout = std::chrono::duration_cast<std::chrono::seconds>(
      cfg->request_timeout);
  self
    ->request(std::get<0>(*hello), timeout, go_hello_atom::value,
              inbox_rx->local_channel(), out->first->sender_id(),
              static_cast<uint64_t>(inbox_rx->capacity()))
    .receive([](ok_atom) {}, [&](caf::error& e) { err = std::move(e); });
  if (err)
    return explain_resolve_error(std::move(err), address, [] {
      return std::string{"the connection was made; the listener did not "
                         "answer the hello"};
    });
  // The inbox's sender side stays alive with the channel (the listener holds
  // its own endpoints): keep only the receiver here.
  static_cast<void>(inbox_tx);
  return dialed{std::move(*n), std::move(out->first), std::move(inbox_rx)};
}

} // namespace netchan::detail
