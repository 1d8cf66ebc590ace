// The floor: a ping-pong written directly against OpenSSL, TLS 1.3 with
// mutual certificate checks (what CAF's OpenSSL module negotiates with the
// same files), blocking sockets on 127.0.0.1, no actors, no serialization.

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bench.hpp"

namespace bench {

namespace {

struct ctx_deleter {
  void operator()(SSL_CTX* p) const {
    SSL_CTX_free(p);
  }
};

struct ssl_deleter {
  void operator()(SSL* p) const {
    SSL_free(p);
  }
};

using ctx_ptr = std::unique_ptr<SSL_CTX, ctx_deleter>;
using ssl_ptr = std::unique_ptr<SSL, ssl_deleter>;

std::string openssl_error() {
  char buf[256];
  ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
  return buf;
}

/// A context that insists on TLS 1.3 and a peer certificate from the CA.
ctx_ptr make_context(bool server, const std::vector<std::string>& args,
                     std::string& error) {
  ctx_ptr ctx{SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())};
  auto cert = arg_value(args, "openssl.certificate");
  auto key = arg_value(args, "openssl.key");
  auto ca = arg_value(args, "openssl.cafile");
  if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1
      || SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) != 1
      || SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM)
           != 1
      || SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr) != 1) {
    error = openssl_error();
    return nullptr;
  }
  SSL_CTX_set_verify(ctx.get(),
                     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     nullptr);
  return ctx;
}

void no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

} // namespace

int run_tls_echo(const options& opt) {
  std::string error;
  auto ctx = make_context(true, opt.config_args, error);
  if (!ctx) {
    std::cout << "error: " << error << std::endl;
    return 1;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0
      || ::listen(fd, 1) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::cout << "error: " << std::strerror(errno) << std::endl;
    return 1;
  }
  std::cout << "port " << ntohs(addr.sin_port) << std::endl;
  int conn = ::accept(fd, nullptr, nullptr);
  ::close(fd);
  if (conn < 0) {
    std::cout << "error: accept: " << std::strerror(errno) << std::endl;
    return 1;
  }
  no_delay(conn);
  ssl_ptr ssl{SSL_new(ctx.get())};
  SSL_set_fd(ssl.get(), conn);
  if (SSL_accept(ssl.get()) != 1) {
    std::cout << "error: handshake: " << openssl_error() << std::endl;
    return 1;
  }
  char buf[16 * 1024];
  for (;;) {
    auto n = SSL_read(ssl.get(), buf, sizeof(buf));
    if (n <= 0 || SSL_write(ssl.get(), buf, n) != n)
      break;
  }
  ::close(conn);
  print_peak();
  return 0;
}

void tls_ping(uint16_t port, const std::vector<std::string>& cert_args,
              double seconds, size_t size, row& r) {
  std::string error;
  auto ctx = make_context(false, cert_args, error);
  if (!ctx) {
    r.note = "OpenSSL: " + error;
    return;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (fd < 0
      || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
           != 0) {
    r.note = std::string{"connect: "} + std::strerror(errno);
    if (fd >= 0)
      ::close(fd);
    return;
  }
  no_delay(fd);
  ssl_ptr ssl{SSL_new(ctx.get())};
  SSL_set_fd(ssl.get(), fd);
  if (SSL_connect(ssl.get()) != 1) {
    r.note = "handshake: " + openssl_error();
    ::close(fd);
    return;
  }
  r.detail += std::string{" ("} + SSL_get_version(ssl.get()) + " "
              + SSL_get_cipher_name(ssl.get()) + ")";
  std::vector<char> out(size, 'x');
  std::vector<char> in(size);
  std::vector<double> lat;
  auto t0 = clock_type::now();
  while (seconds_since(t0) < seconds) {
    auto start = clock_type::now();
    if (SSL_write(ssl.get(), out.data(), static_cast<int>(size))
        != static_cast<int>(size))
      break;
    size_t got = 0;
    while (got < size) {
      auto n = SSL_read(ssl.get(), in.data() + got,
                        static_cast<int>(size - got));
      if (n <= 0)
        break;
      got += static_cast<size_t>(n);
    }
    if (got < size)
      break;
    lat.push_back(micros_since(start));
  }
  auto elapsed = seconds_since(t0);
  SSL_shutdown(ssl.get());
  ::close(fd);
  r.sent = r.received = lat.size();
  r.per_second = lat.size() / elapsed;
  r.median_us = percentile(lat, 0.5);
  r.p99_us = percentile(lat, 0.99);
  r.max_us = percentile(lat, 1.0);
}

} // namespace bench
