// Wrappers of OpenSSL's TLS I/O calls that clear the thread's error queue,
// and cut inbound TLS handshakes that never finish.
//
// Why: OpenSSL keeps one error queue per thread, and `SSL_get_error()` looks
// at that queue first: any entry left in it turns the next call's ordinary
// "would block" into SSL_ERROR_SSL. OpenSSL's documentation therefore asks
// callers to empty the queue before each TLS I/O call. `caf::openssl::session`
// of CAF 0.17.6 never does. When a peer dies without a TLS shutdown (kill -9,
// a cut cable) OpenSSL 3 queues "unexpected eof while reading" on the
// middleman thread that served it; the next would-block `SSL_read` of a
// *healthy* connection on that thread is then misread as fatal and CAF closes
// it (requests over it hang). Debian's CAF cannot be patched in place, so the
// fix rides with netchan.
//
// How: libnetchan defines `SSL_read`, `SSL_write`, `SSL_accept` and
// `SSL_connect` itself. Each calls `ERR_clear_error()` and forwards to the
// real function, looked up once with `dlsym(RTLD_NEXT, ...)`. The dynamic
// linker binds libcaf_openssl.so's calls (and its `&SSL_read`) to the first
// definition in load order, which is the executable's when libnetchan is
// linked statically (the default): the executable exports these symbols
// because a shared library it links, libcaf_openssl.so, refers to them.
// CAF calls no other OpenSSL function whose outcome it reads with
// `SSL_get_error()` (it never calls SSL_do_handshake, SSL_peek or
// SSL_shutdown), so these four suffice. Clearing before each call is
// harmless to any other caller: it is what OpenSSL asks of them anyway.
//
// Handshake deadline: CAF 0.17.6 never times out an inbound connection whose
// TLS handshake does not finish (a client that connects and stays silent,
// sends half a ClientHello, or trickles it a byte at a time). Worse, such a
// connection keeps CAF's I/O thread busy: the BASP broker queues its server
// handshake at once, so the socket is polled for writing; each write event
// runs `SSL_accept`, which wants to read, and CAF's session reports that as
// a successful write of 0 bytes, so the next poll reports the socket
// writable again (a busy loop, ~65 % of a core per connection, measured).
// The connection holds its descriptor forever, and the process cannot exit
// while it is open (the multiplexer waits for its pending write). So the
// `SSL_accept` wrapper notes when it first ran for an `SSL` (in its ex-data)
// and, once a handshake has taken longer than the limit set with
// `limit_tls_handshakes()` (a node's netchan.connect-timeout), shuts the
// socket down before calling OpenSSL: the handshake then fails as it would
// for a peer that went away, and CAF closes the connection and its
// descriptor itself. The busy loop is what drives the check: an unfinished
// handshake is retried constantly. The socket is only shut down, never
// closed: the descriptor stays CAF's.
//
// Linking: a static archive member is only pulled in to resolve a symbol.
// `openssl_error_queue_fix_active()` lives here and node start-up calls it,
// which brings the wrappers along. If libnetchan is built as a shared
// library loaded after libssl, libssl's definitions win and the function
// reports false, so start-up can warn.

#include "transport/tls.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <dlfcn.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/opensslv.h>
#include <openssl/ssl.h>

namespace {

/// Returns whether `address` lies in the object (executable or shared
/// library) that holds this file's code.
bool in_this_object(void* address) {
  static int marker = 0;
  Dl_info ours{};
  Dl_info theirs{};
  if (address == nullptr || dladdr(&marker, &ours) == 0
      || dladdr(address, &theirs) == 0)
    return false;
  return ours.dli_fbase == theirs.dli_fbase;
}

/// Finds the real OpenSSL function `name`: the next definition after ours,
/// else libssl's own (RTLD_NEXT finds nothing when libssl was loaded before
/// us). Aborts if there is none: without it no TLS call could work.
void* find_real(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr || in_this_object(fn)) {
    auto soname = "libssl.so." + std::to_string(OPENSSL_VERSION_MAJOR);
    if (void* libssl = dlopen(soname.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
      fn = dlsym(libssl, name);
      dlclose(libssl);
    }
  }
  if (fn == nullptr || in_this_object(fn)) {
    auto why = dlerror();
    std::fprintf(stderr,
                 "netchan: cannot find OpenSSL's %s behind netchan's wrapper "
                 "(%s); link libssl\n",
                 name, why != nullptr ? why : "no definition after ours");
    std::abort();
  }
  return fn;
}

/// Whether to clear the queue: always, unless the loudly named variable
/// NETCHAN_UNSAFE_NO_SSL_QUEUE_FIX is set, which exists only to show that
/// the neighbour test fails without the fix.
bool clearing() {
  static const bool enabled
    = std::getenv("NETCHAN_UNSAFE_NO_SSL_QUEUE_FIX") == nullptr;
  return enabled;
}

/// Casts what dlsym returned to the function type `Fn`.
template <class Fn>
Fn real(const char* name) {
  return reinterpret_cast<Fn>(find_real(name));
}

/// How long an inbound TLS handshake may take, in milliseconds; 0: forever.
std::atomic<int64_t> handshake_limit_ms{0};

int64_t steady_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch())
    .count();
}

/// The ex-data slot of an `SSL` holding when its handshake began (as an
/// integer in the pointer; 0: not begun), or -1 if OpenSSL has none to give.
int started_slot() {
  static const int slot = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr,
                                               nullptr);
  return slot;
}

/// Returns whether the handshake on `ssl` has outlived the limit; the first
/// call for an `ssl` starts its clock.
bool handshake_overdue(SSL* ssl) {
  auto limit = handshake_limit_ms.load(std::memory_order_relaxed);
  auto slot = started_slot();
  if (limit <= 0 || slot < 0)
    return false;
  auto now = steady_ms();
  auto started = reinterpret_cast<intptr_t>(SSL_get_ex_data(ssl, slot));
  if (started == 0) {
    SSL_set_ex_data(ssl, slot,
                    reinterpret_cast<void*>(static_cast<intptr_t>(now + 1)));
    return false;
  }
  return now + 1 - started > limit;
}

} // namespace

// Function-local statics: looked up once, thread-safe (C++11 magic statics).
// The `visibility` attribute keeps the wrappers exported even if netchan is
// ever built with -fvisibility=hidden.

extern "C" __attribute__((visibility("default"))) int
SSL_read(SSL* ssl, void* buf, int num) {
  static const auto fn = real<int (*)(SSL*, void*, int)>("SSL_read");
  // Peeking first: ERR_clear_error() costs ~870 instructions even on an
  // empty queue (OpenSSL 3), a peek ~230; this runs for every record.
  if (clearing() && ERR_peek_error() != 0)
    ERR_clear_error();
  return fn(ssl, buf, num);
}

extern "C" __attribute__((visibility("default"))) int
SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto fn = real<int (*)(SSL*, const void*, int)>("SSL_write");
  // Peeking first: ERR_clear_error() costs ~870 instructions even on an
  // empty queue (OpenSSL 3), a peek ~230; this runs for every record.
  if (clearing() && ERR_peek_error() != 0)
    ERR_clear_error();
  return fn(ssl, buf, num);
}

extern "C" __attribute__((visibility("default"))) int SSL_accept(SSL* ssl) {
  static const auto fn = real<int (*)(SSL*)>("SSL_accept");
  if (clearing())
    ERR_clear_error();
  if (handshake_overdue(ssl)) {
    // OpenSSL now reads EOF (or fails to write) and reports an error; CAF
    // then closes the connection. The descriptor stays CAF's to close.
    if (auto fd = SSL_get_fd(ssl); fd >= 0)
      ::shutdown(fd, SHUT_RDWR);
  }
  return fn(ssl);
}

extern "C" __attribute__((visibility("default"))) int SSL_connect(SSL* ssl) {
  static const auto fn = real<int (*)(SSL*)>("SSL_connect");
  if (clearing())
    ERR_clear_error();
  return fn(ssl);
}

namespace netchan::detail {

void limit_tls_handshakes(std::chrono::milliseconds limit) {
  auto wanted = static_cast<int64_t>(limit.count());
  auto current = handshake_limit_ms.load();
  while (wanted > current
         && !handshake_limit_ms.compare_exchange_weak(current, wanted)) {
    // retry: another node started at the same time
  }
}

bool openssl_error_queue_fix_active() {
  // What every other object's reference to these names binds to.
  for (auto name : {"SSL_read", "SSL_write", "SSL_accept", "SSL_connect"})
    if (!in_this_object(dlsym(RTLD_DEFAULT, name)))
      return false;
  return true;
}

} // namespace netchan::detail
