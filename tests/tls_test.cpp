#define BOOST_TEST_MODULE tls
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "netchan/errc.hpp"
#include "pki.hpp"
#include "transport/tls.hpp"

using namespace std::chrono_literals;
using netchan::detail::tls_files;

namespace {

// -- helpers ------------------------------------------------------------------

/// Every bounded wait in this suite's servers: long enough for a loaded CI
/// machine, short enough that a broken test fails instead of hanging.
constexpr int server_wait_ms = 10'000;

/// The diagnosis budget: every case but the timeout one ends far sooner.
constexpr auto diagnose_budget = 5s;

/// A test's own SSL errors must not leak into the next test's calls.
struct clean_error_queue {
  clean_error_queue() {
    ERR_clear_error();
    // Our servers may write to a peer that already left.
    std::signal(SIGPIPE, SIG_IGN);
  }
};
BOOST_TEST_GLOBAL_FIXTURE(clean_error_queue);

tls_files files_of(const pki::issued& node, const pki::authority& ca) {
  tls_files files;
  files.certificate = node.certificate;
  files.key = node.key;
  files.passphrase = node.passphrase;
  files.cafile = ca.certificate;
  return files;
}

/// A PKI per test: a CA and a directory that vanish afterwards.
struct pki_fixture {
  pki::temp_dir dir;
  pki::authority ca = pki::make_ca(dir.path(), "ca");

  pki::issued issue(const std::string& name, const pki::options& opts = {}) {
    return pki::issue(ca, dir.path(), name, opts);
  }

  tls_files files(const std::string& name, const pki::options& opts = {}) {
    return files_of(issue(name, opts), ca);
  }
};

std::string utc_day(std::time_t t) {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

void require_contains(const std::string& text,
                      const std::vector<std::string>& needles) {
  for (auto& needle : needles)
    BOOST_CHECK_MESSAGE(text.find(needle) != std::string::npos,
                        "'" << text << "' should contain '" << needle << "'");
}

/// Asserts an invalid_config refusal whose sentence contains every needle,
/// and that validation left no error in the thread's OpenSSL queue.
void require_refusal(const caf::error& err,
                     const std::vector<std::string>& needles) {
  BOOST_REQUIRE_MESSAGE(err, "expected a refusal");
  BOOST_CHECK(netchan::is(err, netchan::errc::invalid_config));
  auto text = netchan::to_string(err);
  BOOST_TEST_MESSAGE(text);
  require_contains(text, needles);
  BOOST_CHECK_EQUAL(ERR_peek_error(), 0u);
}

void require_accepted(const caf::error& err) {
  BOOST_CHECK_MESSAGE(!err, netchan::to_string(err));
  BOOST_CHECK_EQUAL(ERR_peek_error(), 0u);
}

std::string diagnose(uint16_t port, const tls_files& files,
                     std::chrono::milliseconds timeout = diagnose_budget) {
  auto text = netchan::detail::diagnose_handshake("127.0.0.1", port, files,
                                                  timeout);
  BOOST_TEST_MESSAGE(text);
  BOOST_CHECK_EQUAL(ERR_peek_error(), 0u);
  return text;
}

// -- sockets and servers ------------------------------------------------------

/// A listening TCP socket on 127.0.0.1 with a port the kernel chose.
struct listener {
  int fd = -1;
  uint16_t port = 0;

  listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
                  == 0);
    BOOST_REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof(addr);
    BOOST_REQUIRE(
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }

  ~listener() {
    if (fd >= 0)
      ::close(fd);
  }

  /// Accepts one connection within server_wait_ms; -1 if none came. The
  /// connection's reads and writes time out after server_wait_ms too.
  int accept_one() {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, server_wait_ms) != 1)
      return -1;
    int conn = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0)
      return -1;
    timeval tv{server_wait_ms / 1000, 0};
    ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return conn;
  }
};

/// Reads until the peer closes (or the read times out), so that closing our
/// end afterwards cannot reset what the peer has yet to read.
void drain(int conn) {
  char buf[1024];
  while (::recv(conn, buf, sizeof(buf), 0) > 0)
    continue;
}

/// A server thread serving one connection; joined on destruction.
class one_shot_server {
public:
  template <class Serve>
  explicit one_shot_server(Serve serve)
    : thread_([this, serve] {
        int conn = listener_.accept_one();
        if (conn < 0)
          return;
        serve(conn);
        ::close(conn);
      }) {
  }

  ~one_shot_server() {
    thread_.join();
  }

  uint16_t port() const {
    return listener_.port;
  }

private:
  listener listener_;
  std::thread thread_;
};

/// A TLS server context as CAF makes one: mutual TLS, CAF's cipher list.
SSL_CTX* make_server_ctx(const std::string& certificate, const std::string& key,
                         const std::string& cafile, bool require_client_cert) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  BOOST_REQUIRE(ctx != nullptr);
  BOOST_REQUIRE(
    SSL_CTX_use_certificate_chain_file(ctx, certificate.c_str()) == 1);
  BOOST_REQUIRE(
    SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) == 1);
  BOOST_REQUIRE(SSL_CTX_load_verify_locations(ctx, cafile.c_str(), nullptr)
                == 1);
  SSL_CTX_set_verify(ctx,
                     require_client_cert
                       ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                       : SSL_VERIFY_NONE,
                     nullptr);
  BOOST_REQUIRE(SSL_CTX_set_cipher_list(ctx, "HIGH:!aNULL:!MD5") == 1);
  return ctx;
}

/// Serves one TLS handshake, then waits for the client to leave.
void serve_tls(SSL_CTX* ctx, int conn) {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, conn);
  if (SSL_accept(ssl) == 1) {
    char buf[256];
    while (SSL_read(ssl, buf, sizeof(buf)) > 0)
      continue;
  }
  SSL_free(ssl);
  ERR_clear_error(); // this thread's errors stay out of the others'
}

/// A TLS server whose certificate and trusted CA are given.
class tls_server {
public:
  tls_server(const pki::issued& node, const pki::authority& trusted,
             bool require_client_cert = true)
    : ctx_(make_server_ctx(node.certificate, node.key, trusted.certificate,
                           require_client_cert)),
      server_([ctx = ctx_.ptr](int conn) { serve_tls(ctx, conn); }) {
  }

  ~tls_server() = default; // server_ joins before ctx_ is freed

  uint16_t port() const {
    return server_.port();
  }

private:
  struct ctx_holder {
    SSL_CTX* ptr;
    explicit ctx_holder(SSL_CTX* x) : ptr(x) {
    }
    ~ctx_holder() {
      SSL_CTX_free(ptr);
    }
    ctx_holder(const ctx_holder&) = delete;
    ctx_holder& operator=(const ctx_holder&) = delete;
  };
  ctx_holder ctx_;
  one_shot_server server_;
};

// -- a TLS pair in one thread, for the error-queue fix ----------------------

/// Client and server SSL objects over a non-blocking socketpair, handshake
/// done, driven from this thread alone.
struct tls_pair {
  SSL_CTX* server_ctx = nullptr;
  SSL_CTX* client_ctx = nullptr;
  SSL* server = nullptr;
  SSL* client = nullptr;
  int fds[2] = {-1, -1};

  tls_pair(const pki::issued& server_node, const pki::issued& client_node,
           const pki::authority& ca) {
    server_ctx = make_server_ctx(server_node.certificate, server_node.key,
                                 ca.certificate, true);
    client_ctx = SSL_CTX_new(TLS_client_method());
    BOOST_REQUIRE(client_ctx != nullptr);
    BOOST_REQUIRE(SSL_CTX_use_certificate_chain_file(
                    client_ctx, client_node.certificate.c_str())
                  == 1);
    BOOST_REQUIRE(SSL_CTX_use_PrivateKey_file(
                    client_ctx, client_node.key.c_str(), SSL_FILETYPE_PEM)
                  == 1);
    BOOST_REQUIRE(SSL_CTX_load_verify_locations(
                    client_ctx, ca.certificate.c_str(), nullptr)
                  == 1);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, nullptr);
    BOOST_REQUIRE(::socketpair(AF_UNIX,
                               SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                               fds)
                  == 0);
    server = SSL_new(server_ctx);
    client = SSL_new(client_ctx);
    SSL_set_fd(server, fds[0]);
    SSL_set_fd(client, fds[1]);
    bool server_done = false;
    bool client_done = false;
    for (int round = 0; round < 100 && !(server_done && client_done);
         ++round) {
      if (!client_done)
        client_done = step(client, SSL_connect(client));
      if (!server_done)
        server_done = step(server, SSL_accept(server));
    }
    BOOST_REQUIRE_MESSAGE(server_done && client_done,
                          "the in-process TLS handshake did not complete");
    // Reach the steady state of a live connection: the client takes in the
    // server's TLS 1.3 session tickets. A read that still runs OpenSSL's
    // handshake state machine clears the error queue by itself, which would
    // hide the bug.
    char buf[16];
    for (auto ssl : {client, server}) {
      auto rc = SSL_read(ssl, buf, sizeof(buf));
      BOOST_REQUIRE_EQUAL(SSL_get_error(ssl, rc), SSL_ERROR_WANT_READ);
    }
    ERR_clear_error();
  }

  ~tls_pair() {
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(server_ctx);
    ::close(fds[0]);
    ::close(fds[1]);
  }

  static bool step(SSL* ssl, int rc) {
    if (rc == 1)
      return true;
    auto err = SSL_get_error(ssl, rc);
    BOOST_REQUIRE_MESSAGE(err == SSL_ERROR_WANT_READ
                            || err == SSL_ERROR_WANT_WRITE,
                          "handshake step failed with SSL error " << err);
    return false;
  }
};

/// What a peer that died without a TLS shutdown leaves in this thread's
/// queue (OpenSSL 3).
void leave_a_stale_error() {
  ERR_raise(ERR_LIB_SSL, SSL_R_UNEXPECTED_EOF_WHILE_READING);
  BOOST_REQUIRE(ERR_peek_error() != 0);
}

} // namespace

// -- validate_tls -------------------------------------------------------------

BOOST_FIXTURE_TEST_SUITE(validate_tls, pki_fixture)

BOOST_AUTO_TEST_CASE(good_files_pass) {
  require_accepted(netchan::detail::validate_tls(files("node")));
}

BOOST_AUTO_TEST_CASE(no_openssl_keys_at_all_means_anonymous_tls_and_passes) {
  require_accepted(netchan::detail::validate_tls(tls_files{}));
}

BOOST_AUTO_TEST_CASE(an_encrypted_key_with_the_right_passphrase_passes) {
  pki::options opts;
  opts.passphrase = "correct horse";
  require_accepted(netchan::detail::validate_tls(files("node", opts)));
}

BOOST_AUTO_TEST_CASE(a_ca_directory_with_hashed_links_passes) {
  auto f = files("node");
  auto capath = dir / "cas";
  std::filesystem::create_directory(capath);
  auto in = BIO_new_file(ca.certificate.c_str(), "r");
  auto cert = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  BOOST_REQUIRE(cert != nullptr);
  char hash[16];
  std::snprintf(hash, sizeof(hash), "%08lx.0", X509_subject_name_hash(cert));
  X509_free(cert);
  std::filesystem::copy_file(ca.certificate, capath + "/" + hash);
  f.cafile.clear();
  f.capath = capath;
  require_accepted(netchan::detail::validate_tls(f));
}

BOOST_AUTO_TEST_CASE(a_missing_key_setting_is_refused_naming_it) {
  auto f = files("node");
  f.key.clear();
  require_refusal(netchan::detail::validate_tls(f),
                  {"openssl.key is not set", "make-dev-certs.sh"});
}

BOOST_AUTO_TEST_CASE(a_passphrase_alone_is_refused_because_caf_turns_on_tls) {
  tls_files f;
  f.passphrase = "secret";
  require_refusal(netchan::detail::validate_tls(f),
                  {"openssl.certificate", "openssl.key", "openssl.cafile",
                   "are not set"});
}

BOOST_AUTO_TEST_CASE(a_missing_certificate_file_is_refused_naming_its_path) {
  auto f = files("node");
  f.certificate = dir / "no-such.pem";
  require_refusal(netchan::detail::validate_tls(f),
                  {"openssl.certificate", f.certificate, "cannot be read",
                   "No such file", "config/make-dev-certs.sh"});
}

BOOST_AUTO_TEST_CASE(a_missing_ca_file_is_refused_naming_key_and_path) {
  auto f = files("node");
  f.cafile = dir / "no-such-ca.pem";
  require_refusal(netchan::detail::validate_tls(f),
                  {"openssl.cafile", f.cafile, "cannot be read"});
}

BOOST_AUTO_TEST_CASE(a_certificate_that_is_not_pem_is_refused) {
  auto f = files("node");
  f.certificate = f.key; // a classic slip: the key given as certificate
  require_refusal(netchan::detail::validate_tls(f),
                  {"openssl.certificate", "no usable PEM certificate"});
}

BOOST_AUTO_TEST_CASE(a_key_that_does_not_match_the_certificate_is_refused) {
  pki::options opts;
  opts.mismatched_key = true;
  auto f = files("node", opts);
  require_refusal(netchan::detail::validate_tls(f),
                  {"openssl.key", f.key, "does not match",
                   "openssl.certificate", f.certificate});
}

BOOST_AUTO_TEST_CASE(an_expired_certificate_is_refused_with_its_dates) {
  pki::options opts;
  opts.when = pki::validity::expired;
  auto node = issue("node", opts);
  require_refusal(netchan::detail::validate_tls(files_of(node, ca)),
                  {"openssl.certificate", node.certificate, "expired on",
                   utc_day(node.not_after), utc_day(node.not_before)});
}

BOOST_AUTO_TEST_CASE(a_not_yet_valid_certificate_is_refused_with_its_dates) {
  pki::options opts;
  opts.when = pki::validity::not_yet_valid;
  auto node = issue("node", opts);
  require_refusal(netchan::detail::validate_tls(files_of(node, ca)),
                  {"openssl.certificate", "not yet valid", "clock",
                   utc_day(node.not_before), utc_day(node.not_after)});
}

BOOST_AUTO_TEST_CASE(a_certificate_from_another_ca_is_refused_as_untrusted) {
  pki::options opts;
  opts.other_ca = true;
  auto f = files("node", opts);
  require_refusal(netchan::detail::validate_tls(f),
                  {"openssl.certificate", "not signed by", "openssl.cafile",
                   ca.certificate, "node-other-ca"});
}

BOOST_AUTO_TEST_CASE(a_self_signed_certificate_is_refused_as_untrusted) {
  pki::options opts;
  opts.self_signed = true;
  require_refusal(netchan::detail::validate_tls(files("node", opts)),
                  {"not signed by", "openssl.cafile"});
}

BOOST_AUTO_TEST_CASE(a_certificate_without_client_auth_is_refused) {
  pki::options opts;
  opts.client_auth = false;
  require_refusal(netchan::detail::validate_tls(files("node", opts)),
                  {"extendedKeyUsage", "clientAuth", "to open connections"});
}

BOOST_AUTO_TEST_CASE(an_encrypted_key_without_passphrase_is_refused_unprompted) {
  // The sentence below is only produced when netchan's own passphrase
  // callback was asked: OpenSSL's terminal prompt was never reached.
  pki::options opts;
  opts.passphrase = "secret";
  auto f = files("node", opts);
  f.passphrase.clear();
  auto started = std::chrono::steady_clock::now();
  require_refusal(netchan::detail::validate_tls(f),
                  {"openssl.key", f.key, "is encrypted", "openssl.passphrase"});
  BOOST_CHECK(std::chrono::steady_clock::now() - started < 5s);
}

BOOST_AUTO_TEST_CASE(a_wrong_passphrase_is_refused) {
  pki::options opts;
  opts.passphrase = "secret";
  auto f = files("node", opts);
  f.passphrase = "not the secret";
  require_refusal(netchan::detail::validate_tls(f),
                  {"openssl.passphrase", "does not decrypt", f.key});
}

BOOST_AUTO_TEST_SUITE_END()

// -- diagnose_handshake -------------------------------------------------------

BOOST_FIXTURE_TEST_SUITE(diagnose_handshake, pki_fixture)

BOOST_AUTO_TEST_CASE(a_closed_port_is_reported_as_refused) {
  uint16_t port = 0;
  {
    listener gone; // bound, then closed: nothing listens on its port
    port = gone.port;
  }
  require_contains(diagnose(port, files("node")),
                   {"refused", "127.0.0.1:" + std::to_string(port)});
}

BOOST_AUTO_TEST_CASE(a_plaintext_server_is_reported_as_not_tls) {
  one_shot_server server{[](int conn) {
    const char garbage[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    static_cast<void>(::send(conn, garbage, sizeof(garbage) - 1, 0));
    drain(conn);
  }};
  require_contains(diagnose(server.port(), files("node")),
                   {"does not speak TLS", "plaintext", "HTTP/1.1 400"});
}

BOOST_AUTO_TEST_CASE(a_server_that_never_answers_is_reported_as_a_timeout) {
  listener silent; // the kernel completes TCP; nobody ever reads
  auto started = std::chrono::steady_clock::now();
  auto text = diagnose(silent.port, files("node"), 300ms);
  auto took = std::chrono::steady_clock::now() - started;
  require_contains(text, {"timeout", "300 ms", "never answered"});
  BOOST_CHECK(took >= 300ms);
  BOOST_CHECK(took < 3s);
}

BOOST_AUTO_TEST_CASE(a_good_server_is_reported_as_a_successful_handshake) {
  tls_server server{issue("hub"), ca};
  auto started = std::chrono::steady_clock::now();
  auto text = diagnose(server.port(), files("node"));
  require_contains(text, {"succeeds", "TLS is not the problem", "CN=hub"});
  // The server's session tickets are its "yes": no waiting out the budget.
  BOOST_CHECK(std::chrono::steady_clock::now() - started < 3s);
}

BOOST_AUTO_TEST_CASE(a_server_certificate_from_another_ca_is_not_trusted) {
  pki::options opts;
  opts.other_ca = true;
  tls_server server{issue("hub", opts), ca};
  require_contains(diagnose(server.port(), files("node")),
                   {"not signed by our CA", "hub-other-ca", "openssl.cafile"});
}

BOOST_AUTO_TEST_CASE(an_expired_server_certificate_is_reported_with_its_date) {
  pki::options opts;
  opts.when = pki::validity::expired;
  auto hub = issue("hub", opts);
  tls_server server{hub, ca};
  require_contains(diagnose(server.port(), files("node")),
                   {"expired", utc_day(hub.not_after)});
}

BOOST_AUTO_TEST_CASE(a_server_that_rejects_our_certificate_is_reported) {
  // The server's certificate comes from our CA, so we accept it; but the
  // server trusts only another CA, so it rejects ours (in TLS 1.3 only
  // after our side of the handshake is done).
  pki::temp_dir other_dir;
  auto server_ca = pki::make_ca(other_dir.path(), "server-ca");
  tls_server server{issue("hub"), server_ca};
  require_contains(diagnose(server.port(), files("node")),
                   {"rejected our certificate", "unknown_ca"});
}

BOOST_AUTO_TEST_CASE(a_server_requiring_a_certificate_we_do_not_have_says_so) {
  tls_server server{issue("hub"), ca};
  require_contains(diagnose(server.port(), tls_files{}),
                   {"requires a client certificate",
                    "offered no client certificate"});
}

BOOST_AUTO_TEST_CASE(our_own_broken_files_are_named_before_any_handshake) {
  pki::options opts;
  opts.mismatched_key = true;
  require_contains(diagnose(1, files("node", opts)),
                   {"this node's own TLS files", "does not match"});
}

BOOST_AUTO_TEST_SUITE_END()

// -- the OpenSSL error-queue fix ----------------------------------------------

BOOST_FIXTURE_TEST_SUITE(error_queue_fix, pki_fixture)

BOOST_AUTO_TEST_CASE(the_wrappers_are_the_definitions_this_process_uses) {
  BOOST_CHECK(netchan::detail::openssl_error_queue_fix_active());
}

BOOST_AUTO_TEST_CASE(without_the_fix_a_stale_error_fails_a_healthy_read) {
  // The bug the fix is for, shown with OpenSSL's own SSL_read.
  using read_fn = int (*)(SSL*, void*, int);
  auto real_read = reinterpret_cast<read_fn>(dlsym(RTLD_NEXT, "SSL_read"));
  BOOST_REQUIRE(real_read != nullptr);
  BOOST_REQUIRE(real_read != &SSL_read);
  tls_pair pair{issue("hub"), issue("node"), ca};
  char buf[16];
  leave_a_stale_error();
  auto rc = real_read(pair.client, buf, sizeof(buf));
  BOOST_CHECK_EQUAL(rc, -1);
  BOOST_CHECK_EQUAL(SSL_get_error(pair.client, rc), SSL_ERROR_SSL);
  ERR_clear_error();
}

BOOST_AUTO_TEST_CASE(with_the_fix_a_stale_error_leaves_a_healthy_read_waiting) {
  tls_pair pair{issue("hub"), issue("node"), ca};
  char buf[16];
  leave_a_stale_error();
  auto rc = SSL_read(pair.client, buf, sizeof(buf));
  BOOST_CHECK_EQUAL(rc, -1);
  BOOST_CHECK_EQUAL(SSL_get_error(pair.client, rc), SSL_ERROR_WANT_READ);
  // The connection still works both ways.
  leave_a_stale_error();
  BOOST_CHECK_EQUAL(SSL_write(pair.server, "ping", 4), 4);
  leave_a_stale_error();
  BOOST_CHECK_EQUAL(SSL_read(pair.client, buf, sizeof(buf)), 4);
  ERR_clear_error();
}

BOOST_AUTO_TEST_SUITE_END()
