#include "relay.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <vector>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace test {

namespace {

/// Bytes one direction of a pair holds before the relay stops reading its
/// source: the sender then feels TCP backpressure, as it would without us.
constexpr size_t flow_capacity = 256 * 1024;

/// While accept fails for want of descriptors, retry this often.
constexpr int accept_retry_ms = 100;

struct endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
};

endpoint resolve(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (auto rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
      rc != 0)
    throw std::runtime_error("relay: cannot resolve " + host + ": "
                             + ::gai_strerror(rc));
  endpoint result;
  std::memcpy(&result.addr, found->ai_addr, found->ai_addrlen);
  result.len = found->ai_addrlen;
  ::freeaddrinfo(found);
  return result;
}

/// Closes `fd` with an RST instead of a FIN.
void reset(int fd) {
  linger abortive{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
  ::close(fd);
}

/// Relayed bytes should not wait for Nagle on either hop.
void no_delay(int fd) {
  int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

bool would_block() {
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

} // namespace

// -- relay thread state -------------------------------------------------------

/// Bytes on their way from one side of a pair to the other.
struct relay::flow {
  std::vector<char> data;
  size_t head = 0;

  size_t size() const {
    return data.size() - head;
  }

  bool empty() const {
    return size() == 0;
  }

  size_t room() const {
    return flow_capacity - std::min(flow_capacity, size());
  }

  void append(const char* bytes, size_t n) {
    if (head > 0) {
      data.erase(data.begin(), data.begin() + static_cast<long>(head));
      head = 0;
    }
    data.insert(data.end(), bytes, bytes + n);
  }

  void consume(size_t n) {
    head += n;
    if (head == data.size()) {
      data.clear();
      head = 0;
    }
  }
};

/// One accepted client and its own connection to the target.
struct relay::link {
  int client = -1;
  int server = -1;
  bool connecting = true;
  bool dead = false;
  flow upstream;   // client -> server
  flow downstream; // server -> client
  bool client_eof = false;
  bool server_eof = false;
  bool server_shut = false;
  bool client_shut = false;
  uint64_t forwarded = 0;
  /// Set by `cut_handshakes`: reset once this many bytes went through.
  std::optional<uint64_t> cut_after;
  /// Where this link's sockets are in this round's poll set, or -1.
  int client_slot = -1;
  int server_slot = -1;
};

struct relay::state {
  endpoint target;
  bool stalled = false;
  bool refusing = false;
  size_t handshake_cuts = 0;
  size_t handshake_after = 0;
  bool accept_paused = false;
  std::vector<std::unique_ptr<link>> links;
  std::vector<pollfd> fds;
  std::vector<char> scratch = std::vector<char>(64 * 1024);
};

// -- constructors, destructors ------------------------------------------------

relay::relay(std::string target_host, uint16_t target_port)
  : state_(std::make_unique<state>()) {
  state_->target = resolve(target_host, target_port);
  auto fail = [this](const char* what) {
    auto reason = std::string{"relay: "} + what + ": " + std::strerror(errno);
    if (listener_ >= 0)
      ::close(listener_);
    if (wake_ >= 0)
      ::close(wake_);
    throw std::runtime_error(reason);
  };
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listener_ < 0)
    fail("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  // A full backlog would drop SYNs and turn a burst of dials into 1 s
  // retransmissions.
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::listen(listener_, SOMAXCONN) != 0
      || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len)
           != 0)
    fail("cannot listen on 127.0.0.1");
  port_ = ntohs(addr.sin_port);
  wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_ < 0)
    fail("eventfd");
  thread_ = std::thread{[this] { run(); }};
}

relay::~relay() {
  stop_ = true;
  wake();
  thread_.join();
  ::close(listener_);
  ::close(wake_);
}

// -- properties ---------------------------------------------------------------

size_t relay::active() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return active_;
}

// -- commands -----------------------------------------------------------------

void relay::cut() {
  apply([this] {
    for (auto& l : state_->links)
      finish(*l, ending::cut);
  });
}

void relay::stall(bool on) {
  apply([this, on] { state_->stalled = on; });
}

void relay::retarget(std::string host, uint16_t port) {
  auto target = resolve(host, port);
  apply([this, target] { state_->target = target; });
}

void relay::cut_handshakes(size_t connections, size_t after_bytes) {
  apply([this, connections, after_bytes] {
    state_->handshake_cuts = connections;
    state_->handshake_after = after_bytes;
  });
}

void relay::refuse(bool on) {
  apply([this, on] { state_->refusing = on; });
}

// -- waiting ------------------------------------------------------------------

bool relay::wait_active(size_t n, std::chrono::milliseconds deadline) {
  std::unique_lock<std::mutex> guard{mtx_};
  return active_changed_.wait_for(guard, deadline,
                                  [&] { return active_ >= n; });
}

// -- callers ------------------------------------------------------------------

void relay::apply(std::function<void()> command) {
  std::packaged_task<void()> task{std::move(command)};
  auto done = task.get_future();
  {
    std::lock_guard<std::mutex> guard{mtx_};
    commands_.push_back(std::move(task));
  }
  wake();
  done.get();
}

void relay::wake() {
  uint64_t one = 1;
  [[maybe_unused]] auto rc = ::write(wake_, &one, sizeof(one));
}

// -- relay thread -------------------------------------------------------------

void relay::run() {
  auto& s = *state_;
  while (!stop_) {
    s.links.erase(std::remove_if(s.links.begin(), s.links.end(),
                                 [](auto& l) { return l->dead; }),
                  s.links.end());
    s.fds.clear();
    s.fds.push_back({wake_, POLLIN, 0});
    s.fds.push_back({s.accept_paused ? -1 : listener_, POLLIN, 0});
    for (auto& l : s.links)
      watch(*l);
    auto rc = ::poll(s.fds.data(), s.fds.size(),
                     s.accept_paused ? accept_retry_ms : -1);
    if (rc < 0)
      continue; // EINTR
    if (s.fds[0].revents != 0) {
      // Commands may close links: serve no stale poll results after them.
      uint64_t count = 0;
      [[maybe_unused]] auto n = ::read(wake_, &count, sizeof(count));
      run_commands();
      continue;
    }
    // Links accepted below were not polled: serve the polled ones only.
    auto polled = s.links.size();
    for (size_t i = 0; i < polled; ++i)
      serve(*s.links[i]);
    if (s.fds[1].revents != 0 || s.accept_paused)
      accept_all();
  }
  for (auto& l : s.links)
    finish(*l, ending::graceful);
  s.links.clear();
}

void relay::watch(link& l) {
  auto& s = *state_;
  l.client_slot = -1;
  l.server_slot = -1;
  auto add = [&s](int fd, short events) {
    s.fds.push_back({fd, events, 0});
    return static_cast<int>(s.fds.size() - 1);
  };
  if (l.dead)
    return;
  if (l.connecting) {
    l.server_slot = add(l.server, POLLOUT);
    return;
  }
  if (s.stalled)
    return;
  // A socket with nothing to do is not polled: its errors surface once there
  // is something to read or write again.
  short client_events = 0;
  short server_events = 0;
  if (!l.client_eof && l.upstream.room() > 0)
    client_events |= POLLIN;
  if (!l.downstream.empty())
    client_events |= POLLOUT;
  if (!l.server_eof && l.downstream.room() > 0)
    server_events |= POLLIN;
  if (!l.upstream.empty())
    server_events |= POLLOUT;
  if (client_events != 0)
    l.client_slot = add(l.client, client_events);
  if (server_events != 0)
    l.server_slot = add(l.server, server_events);
}

void relay::serve(link& l) {
  auto& s = *state_;
  if (l.dead)
    return;
  short client_ready = l.client_slot >= 0 ? s.fds[l.client_slot].revents : 0;
  short server_ready = l.server_slot >= 0 ? s.fds[l.server_slot].revents : 0;
  if (l.connecting) {
    if (server_ready != 0)
      connected(l);
    return;
  }
  if (client_ready == 0 && server_ready == 0)
    return;
  if ((client_ready | server_ready) & POLLERR)
    return finish(l, ending::abortive);
  // Reads one chunk of what `from` has into `into`; false on a failure.
  auto receive = [&s](int from, flow& into, bool& eof) {
    auto n = ::recv(from, s.scratch.data(),
                    std::min(into.room(), s.scratch.size()), 0);
    if (n > 0)
      into.append(s.scratch.data(), static_cast<size_t>(n));
    else if (n == 0)
      eof = true;
    else if (!would_block())
      return false;
    return true;
  };
  if ((client_ready & (POLLIN | POLLHUP)) && !l.client_eof
      && !receive(l.client, l.upstream, l.client_eof))
    return finish(l, ending::abortive);
  if ((server_ready & (POLLIN | POLLHUP)) && !l.server_eof
      && !receive(l.server, l.downstream, l.server_eof))
    return finish(l, ending::abortive);
  pump(l);
}

void relay::pump(link& l) {
  if (!drain(l, l.server, l.upstream) || !drain(l, l.client, l.downstream))
    return finish(l, ending::abortive);
  if (l.dead)
    return; // cut by cut_handshakes
  // Half-close: pass an EOF on once everything before it went through.
  if (l.client_eof && l.upstream.empty() && !l.server_shut) {
    ::shutdown(l.server, SHUT_WR);
    l.server_shut = true;
  }
  if (l.server_eof && l.downstream.empty() && !l.client_shut) {
    ::shutdown(l.client, SHUT_WR);
    l.client_shut = true;
  }
  if (l.server_shut && l.client_shut)
    finish(l, ending::graceful);
}

bool relay::drain(link& l, int to, flow& from) {
  while (!l.dead && !from.empty()) {
    auto n = from.size();
    if (l.cut_after)
      n = std::min<uint64_t>(n, *l.cut_after - l.forwarded);
    auto sent = ::send(to, from.data.data() + from.head, n, MSG_NOSIGNAL);
    if (sent < 0)
      return would_block();
    from.consume(static_cast<size_t>(sent));
    l.forwarded += static_cast<uint64_t>(sent);
    bytes_ += static_cast<uint64_t>(sent);
    if (l.cut_after && l.forwarded >= *l.cut_after)
      finish(l, ending::cut);
  }
  return true;
}

void relay::connected(link& l) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (::getsockopt(l.server, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    err = errno;
  if (err != 0)
    return finish(l, ending::abortive); // the target refused
  l.connecting = false;
  count_active(1);
  if (l.cut_after && *l.cut_after == 0)
    finish(l, ending::cut);
}

void relay::accept_all() {
  auto& s = *state_;
  s.accept_paused = false;
  for (;;) {
    int fd = ::accept4(listener_, nullptr, nullptr,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == ECONNABORTED || errno == EINTR)
        continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
          || errno == ENOMEM)
        s.accept_paused = true;
      return;
    }
    ++accepted_;
    if (s.refusing) {
      reset(fd);
      continue;
    }
    no_delay(fd);
    auto l = std::make_unique<link>();
    l->client = fd;
    if (s.handshake_cuts > 0) {
      --s.handshake_cuts;
      l->cut_after = s.handshake_after;
    }
    l->server = ::socket(s.target.addr.ss_family,
                         SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->server < 0) {
      s.accept_paused = true;
      reset(fd);
      return;
    }
    no_delay(l->server);
    auto rc = ::connect(l->server,
                        reinterpret_cast<const sockaddr*>(&s.target.addr),
                        s.target.len);
    if (rc != 0 && errno != EINPROGRESS) {
      finish(*l, ending::abortive);
      continue;
    }
    s.links.push_back(std::move(l));
    if (rc == 0)
      connected(*s.links.back());
  }
}

void relay::run_commands() {
  std::deque<std::packaged_task<void()>> todo;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    todo.swap(commands_);
  }
  for (auto& command : todo)
    command();
}

void relay::count_active(long delta) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    active_ = static_cast<size_t>(static_cast<long>(active_) + delta);
  }
  active_changed_.notify_all();
}

void relay::finish(link& l, ending how) {
  if (l.dead)
    return;
  l.dead = true;
  // Counters first: whoever sees the sockets close sees them updated.
  if (how == ending::cut)
    ++cuts_;
  if (!l.connecting)
    count_active(-1);
  for (auto fd : {l.client, l.server}) {
    if (fd < 0)
      continue;
    if (how == ending::graceful)
      ::close(fd);
    else
      reset(fd);
  }
  l.client = -1;
  l.server = -1;
}

} // namespace test
