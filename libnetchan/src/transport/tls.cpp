#include "transport/tls.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <caf/message.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "netchan/errc.hpp"

namespace netchan::detail {

bool tls_files::any() const {
  return !certificate.empty() || !key.empty() || !passphrase.empty()
         || !cafile.empty() || !capath.empty();
}

namespace {

// -- OpenSSL plumbing ---------------------------------------------------------

template <class T, void (*Free)(T*)>
struct openssl_deleter {
  void operator()(T* ptr) const {
    Free(ptr);
  }
};

using ctx_ptr
  = std::unique_ptr<SSL_CTX, openssl_deleter<SSL_CTX, SSL_CTX_free>>;
using ssl_ptr = std::unique_ptr<SSL, openssl_deleter<SSL, SSL_free>>;
using pkey_ptr
  = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY, EVP_PKEY_free>>;
using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO, BIO_free_all>>;
using store_ctx_ptr
  = std::unique_ptr<X509_STORE_CTX,
                    openssl_deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

/// Empties the thread's error queue on entry and on every exit, so that no
/// error of ours is left for the next TLS call on this thread to trip over
/// (the very bug openssl_shim.cpp works around in CAF).
struct error_queue_scope {
  error_queue_scope() {
    ERR_clear_error();
  }
  ~error_queue_scope() {
    ERR_clear_error();
  }
  error_queue_scope(const error_queue_scope&) = delete;
  error_queue_scope& operator=(const error_queue_scope&) = delete;
};

/// OpenSSL's reason for the oldest queued error, e.g. "no start line".
std::string openssl_reason() {
  auto code = ERR_peek_error();
  if (code == 0)
    return "no reason given";
  if (auto reason = ERR_reason_error_string(code))
    return reason;
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

/// What the passphrase callback was asked and had to give.
struct passphrase_state {
  const std::string* passphrase = nullptr;
  int calls = 0;
};

/// Hands OpenSSL the configured passphrase, or fails when there is none.
/// Installing it is what keeps OpenSSL from prompting on the terminal.
int passphrase_callback(char* buf, int size, int, void* user_data) {
  auto state = static_cast<passphrase_state*>(user_data);
  if (state == nullptr)
    return -1;
  ++state->calls;
  if (state->passphrase == nullptr || state->passphrase->empty() || size <= 0)
    return -1;
  // CAF copies at most size - 1 bytes; so do we, to decrypt alike.
  auto len = std::min(state->passphrase->size(), static_cast<size_t>(size - 1));
  std::memcpy(buf, state->passphrase->data(), len);
  buf[len] = '\0';
  return static_cast<int>(len);
}

/// `t` as "2025-03-01 12:00:00 UTC".
std::string format_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1)
    return "an unreadable date";
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

/// A distinguished name as "CN=node,O=netchan".
std::string name_of(const X509_NAME* name) {
  bio_ptr bio{BIO_new(BIO_s_mem())};
  if (!bio || name == nullptr
      || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0)
    return "an unreadable name";
  char* data = nullptr;
  auto len = BIO_get_mem_data(bio.get(), &data);
  std::string result(data, static_cast<size_t>(len));
  return result.empty() ? "an empty name" : result;
}

/// "CN=node, issued by CN=netchan dev CA".
std::string describe(X509* cert) {
  return name_of(X509_get_subject_name(cert)) + ", issued by "
         + name_of(X509_get_issuer_name(cert));
}

std::string validity_of(X509* cert) {
  return "valid from " + format_time(X509_get0_notBefore(cert)) + " to "
         + format_time(X509_get0_notAfter(cert));
}

bool is_untrusted_issuer(int verify_error) {
  switch (verify_error) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_UNTRUSTED:
      return true;
    default:
      return false;
  }
}

// -- validation ---------------------------------------------------------------

const char* const dev_hint
  = "run config/make-dev-certs.sh to create dev certificates in "
    "config/certs/";

caf::error invalid(std::string sentence) {
  return make_error(errc::invalid_config, std::move(sentence));
}

std::string quoted(const std::string& path) {
  return "\"" + path + "\"";
}

/// Why `path` cannot be read as a file (or, with `directory`, searched as a
/// directory); empty if it can.
std::string unreadable(const std::string& path, bool directory) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return std::strerror(errno);
  if (directory && !S_ISDIR(st.st_mode))
    return "not a directory";
  if (!directory && S_ISDIR(st.st_mode))
    return "it is a directory";
  if (::access(path.c_str(), directory ? R_OK | X_OK : R_OK) != 0)
    return std::strerror(errno);
  return {};
}

/// "the CA in openssl.cafile "ca.pem"" and/or the capath equivalent.
std::string ca_source(const tls_files& files) {
  std::string result;
  if (!files.cafile.empty())
    result = "the CA in openssl.cafile " + quoted(files.cafile);
  if (!files.capath.empty()) {
    if (!result.empty())
      result += " or ";
    result += "the CAs in openssl.capath " + quoted(files.capath);
  }
  return result;
}

/// Verifies the certificate loaded into `ctx` against its trust store for
/// one purpose; returns a sentence, or empty if it verifies.
std::string verify_for(SSL_CTX* ctx, const tls_files& files, int purpose,
                       const char* use, const char* eku) {
  auto leaf = SSL_CTX_get0_certificate(ctx);
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx, &chain);
  store_ctx_ptr store_ctx{X509_STORE_CTX_new()};
  if (!store_ctx
      || X509_STORE_CTX_init(store_ctx.get(), SSL_CTX_get_cert_store(ctx), leaf,
                             chain)
           != 1)
    return "cannot check openssl.certificate: OpenSSL is out of memory";
  X509_STORE_CTX_set_purpose(store_ctx.get(), purpose);
  if (X509_verify_cert(store_ctx.get()) == 1)
    return {};
  auto err = X509_STORE_CTX_get_error(store_ctx.get());
  auto depth = X509_STORE_CTX_get_error_depth(store_ctx.get());
  auto at = X509_STORE_CTX_get_current_cert(store_ctx.get());
  auto reason = std::string{X509_verify_cert_error_string(err)};
  auto cert = "openssl.certificate " + quoted(files.certificate);
  if (is_untrusted_issuer(err)) {
    auto sentence = cert + " (" + describe(leaf) + ") is not signed by "
                    + ca_source(files) + " (OpenSSL: " + reason
                    + "), so peers would refuse it: issue it with that CA ("
                    + "config/make-dev-certs.sh does), or point openssl.cafile "
                    + "at the CA that signed it";
    if (!files.capath.empty())
      sentence += "; a capath needs hashed links (run `openssl rehash` on it)";
    return sentence;
  }
  if (depth > 0 && at != nullptr
      && (err == X509_V_ERR_CERT_HAS_EXPIRED
          || err == X509_V_ERR_CERT_NOT_YET_VALID))
    return "the CA certificate " + name_of(X509_get_subject_name(at))
           + " that openssl.certificate " + quoted(files.certificate)
           + " chains to " + (err == X509_V_ERR_CERT_HAS_EXPIRED
                                ? "expired on "
                                    + format_time(X509_get0_notAfter(at))
                                : "is not valid before "
                                    + format_time(X509_get0_notBefore(at)))
           + " (" + validity_of(at) + "): create a new CA and re-issue the "
           + "node certificates (config/make-dev-certs.sh --force)";
  if (err == X509_V_ERR_INVALID_PURPOSE)
    return cert + " (" + describe(leaf) + ") may not be used " + use
           + ": its extendedKeyUsage lacks " + eku + ". Every node both "
           + "accepts and opens connections, so issue it with "
           + "extendedKeyUsage serverAuth,clientAuth (config/make-dev-certs.sh "
           + "does)";
  return cert + " (" + describe(leaf) + ") does not verify against "
         + ca_source(files) + " for use " + use + " (OpenSSL: " + reason
         + " at depth " + std::to_string(depth) + "): " + dev_hint
         + ", or fix the certificate";
}

} // namespace

caf::error validate_tls(const tls_files& files) {
  if (!files.any())
    return caf::none;
  error_queue_scope queue_scope;
  // All three are needed: CAF then requires a certificate from both peers.
  std::vector<std::string> missing;
  if (files.certificate.empty())
    missing.emplace_back("openssl.certificate");
  if (files.key.empty())
    missing.emplace_back("openssl.key");
  if (files.cafile.empty() && files.capath.empty())
    missing.emplace_back("openssl.cafile (or openssl.capath)");
  if (!missing.empty()) {
    std::string names;
    for (size_t i = 0; i < missing.size(); ++i) {
      if (i > 0)
        names += i + 1 == missing.size() ? " and " : ", ";
      names += missing[i];
    }
    return invalid(names + (missing.size() == 1 ? " is" : " are")
                   + " not set, but other openssl.* keys are: CAF then uses "
                     "mutual TLS, which needs a certificate, its key and the "
                     "CA on every node; set openssl.certificate, openssl.key "
                     "and openssl.cafile ("
                   + dev_hint + ")");
  }
  // Readable files, named by key.
  struct named_path {
    const char* key;
    const std::string* path;
    bool directory;
  };
  const named_path paths[] = {
    {"openssl.certificate", &files.certificate, false},
    {"openssl.key", &files.key, false},
    {"openssl.cafile", &files.cafile, false},
    {"openssl.capath", &files.capath, true},
  };
  for (auto& p : paths) {
    if (p.path->empty())
      continue;
    auto why = unreadable(*p.path, p.directory);
    if (!why.empty())
      return invalid(std::string{p.key} + " " + quoted(*p.path)
                     + " cannot be read (" + why + "): fix the path, or "
                     + dev_hint);
  }
  ctx_ptr ctx{SSL_CTX_new(TLS_method())};
  if (!ctx)
    return invalid("cannot check the openssl.* files: OpenSSL cannot create "
                   "a context ("
                   + openssl_reason() + ")");
  passphrase_state pass{&files.passphrase};
  SSL_CTX_set_default_passwd_cb(ctx.get(), passphrase_callback);
  SSL_CTX_set_default_passwd_cb_userdata(ctx.get(), &pass);
  // The certificate, read as CAF reads it (a chain file: leaf first).
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.certificate.c_str())
      != 1)
    return invalid("openssl.certificate " + quoted(files.certificate)
                   + " holds no usable PEM certificate (OpenSSL: "
                   + openssl_reason()
                   + "): point it at the node's certificate file, which "
                     "begins with -----BEGIN CERTIFICATE-----, or "
                   + dev_hint);
  auto leaf = SSL_CTX_get0_certificate(ctx.get());
  // The key, through our callback: an encrypted key never prompts.
  ERR_clear_error();
  pkey_ptr key;
  if (bio_ptr in{BIO_new_file(files.key.c_str(), "r")})
    key.reset(PEM_read_bio_PrivateKey(in.get(), nullptr, passphrase_callback,
                                      &pass));
  if (!key) {
    if (pass.calls > 0 && files.passphrase.empty())
      return invalid("openssl.key " + quoted(files.key)
                     + " is encrypted and openssl.passphrase is not set: set "
                       "openssl.passphrase to the key's passphrase (without "
                       "it CAF would ask on the terminal), or use an "
                       "unencrypted key");
    if (pass.calls > 0)
      return invalid("openssl.passphrase does not decrypt openssl.key "
                     + quoted(files.key) + " (OpenSSL: " + openssl_reason()
                     + "): set the passphrase the key was encrypted with");
    return invalid("openssl.key " + quoted(files.key)
                   + " holds no usable PEM private key (OpenSSL: "
                   + openssl_reason()
                   + "): point it at the key of openssl.certificate, which "
                     "begins with -----BEGIN PRIVATE KEY-----, or "
                   + dev_hint);
  }
  if (X509_check_private_key(leaf, key.get()) != 1)
    return invalid("openssl.key " + quoted(files.key)
                   + " does not match openssl.certificate "
                   + quoted(files.certificate) + " (" + describe(leaf)
                   + "): give the key the certificate was issued for "
                     "(NAME-key.pem next to NAME.pem), or re-create both "
                     "with config/make-dev-certs.sh --force");
  ERR_clear_error();
  if (SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1)
    return invalid("openssl.key " + quoted(files.key)
                   + " cannot be used for TLS (OpenSSL: " + openssl_reason()
                   + "): use an EC P-256 or RSA key, or " + dev_hint);
  // Dates, named, before the chain check that would only say "expired".
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
    return invalid("openssl.certificate " + quoted(files.certificate) + " ("
                   + describe(leaf) + ") expired on "
                   + format_time(X509_get0_notAfter(leaf)) + " ("
                   + validity_of(leaf)
                   + "): issue a new one (on a dev machine: "
                     "config/make-dev-certs.sh --force)");
  if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
    return invalid("openssl.certificate " + quoted(files.certificate) + " ("
                   + describe(leaf) + ") is not yet valid: not before "
                   + format_time(X509_get0_notBefore(leaf)) + " ("
                   + validity_of(leaf)
                   + "); check this machine's clock, or issue one that is "
                     "valid now");
  // The trust anchors, loaded as CAF loads them.
  ERR_clear_error();
  auto cafile = files.cafile.empty() ? nullptr : files.cafile.c_str();
  auto capath = files.capath.empty() ? nullptr : files.capath.c_str();
  if (SSL_CTX_load_verify_locations(ctx.get(), cafile, capath) != 1)
    return invalid(
      std::string{cafile != nullptr ? "openssl.cafile " + quoted(files.cafile)
                                    : "openssl.capath " + quoted(files.capath)}
      + " holds no usable PEM CA certificate (OpenSSL: " + openssl_reason()
      + "): point it at the CA certificate that signed every node's "
        "certificate (config/certs/ca.pem), or "
      + dev_hint);
  // Each node accepts connections (a TLS server) and opens them (a client).
  auto problem = verify_for(ctx.get(), files, X509_PURPOSE_SSL_SERVER,
                            "to accept connections", "serverAuth");
  if (problem.empty())
    problem = verify_for(ctx.get(), files, X509_PURPOSE_SSL_CLIENT,
                         "to open connections", "clientAuth");
  if (!problem.empty())
    return invalid(std::move(problem));
  return caf::none;
}

// -- diagnosis ----------------------------------------------------------------

namespace {

using steady = std::chrono::steady_clock;

/// A socket descriptor, closed on destruction.
struct socket_guard {
  int fd = -1;
  explicit socket_guard(int x) : fd(x) {
  }
  ~socket_guard() {
    if (fd >= 0)
      ::close(fd);
  }
  socket_guard(const socket_guard&) = delete;
  socket_guard& operator=(const socket_guard&) = delete;
};

/// What the handshake showed, collected by OpenSSL's callbacks and by the
/// socket pump.
struct observation {
  int alert_received = -1; // first fatal alert description from the server
  int verify_error = X509_V_OK;
  int verify_depth = 0;
  std::string verify_subject;
  std::string verify_issuer;
  std::string verify_not_before;
  std::string verify_not_after;
  bool ticket_received = false;
  size_t bytes_received = 0;
  std::string first_bytes;
  bool eof = false;
  int socket_error = 0;
};

int observation_index() {
  static const int index
    = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

observation* observation_of(const SSL* ssl) {
  return static_cast<observation*>(SSL_get_ex_data(ssl, observation_index()));
}

void info_callback(const SSL* ssl, int where, int ret) {
  auto obs = observation_of(ssl);
  if (obs == nullptr || (where & SSL_CB_READ_ALERT) != SSL_CB_READ_ALERT)
    return;
  auto description = ret & 0xff;
  if (description != SSL_AD_CLOSE_NOTIFY && obs->alert_received < 0)
    obs->alert_received = description;
}

int verify_callback(int ok, X509_STORE_CTX* store_ctx) {
  auto ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(
    store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto obs = ssl != nullptr ? observation_of(ssl) : nullptr;
  if (ok != 1 && obs != nullptr && obs->verify_error == X509_V_OK) {
    obs->verify_error = X509_STORE_CTX_get_error(store_ctx);
    obs->verify_depth = X509_STORE_CTX_get_error_depth(store_ctx);
    if (auto cert = X509_STORE_CTX_get_current_cert(store_ctx)) {
      obs->verify_subject = name_of(X509_get_subject_name(cert));
      obs->verify_issuer = name_of(X509_get_issuer_name(cert));
      obs->verify_not_before = format_time(X509_get0_notBefore(cert));
      obs->verify_not_after = format_time(X509_get0_notAfter(cert));
    }
  }
  return ok;
}

/// A TLS 1.3 server sends session tickets only once it accepted our Finished
/// (and with it our certificate): a ticket is its "yes".
int new_session_callback(SSL* ssl, SSL_SESSION*) {
  if (auto obs = observation_of(ssl))
    obs->ticket_received = true;
  return 0; // we keep no reference
}

/// The RFC 8446 name of a TLS alert.
std::string alert_name(int description) {
  switch (description) {
    case SSL_AD_HANDSHAKE_FAILURE: return "handshake_failure";
    case SSL_AD_BAD_CERTIFICATE: return "bad_certificate";
    case SSL_AD_UNSUPPORTED_CERTIFICATE: return "unsupported_certificate";
    case SSL_AD_CERTIFICATE_REVOKED: return "certificate_revoked";
    case SSL_AD_CERTIFICATE_EXPIRED: return "certificate_expired";
    case SSL_AD_CERTIFICATE_UNKNOWN: return "certificate_unknown";
    case SSL_AD_UNKNOWN_CA: return "unknown_ca";
    case SSL_AD_ACCESS_DENIED: return "access_denied";
    case SSL_AD_DECRYPT_ERROR: return "decrypt_error";
    case SSL_AD_PROTOCOL_VERSION: return "protocol_version";
    case SSL_AD_INSUFFICIENT_SECURITY: return "insufficient_security";
    case SSL_AD_INTERNAL_ERROR: return "internal_error";
    case SSL_AD_CERTIFICATE_REQUIRED: return "certificate_required";
    default: return SSL_alert_desc_string_long(description);
  }
}

/// Whether `data` starts like a TLS record: content type 20..23, then
/// version major 3.
bool looks_like_tls(const std::string& data) {
  if (data.empty())
    return true;
  auto type = static_cast<unsigned char>(data[0]);
  if (type < 20 || type > 23)
    return false;
  return data.size() < 2 || static_cast<unsigned char>(data[1]) == 3;
}

/// Up to 40 bytes, non-printable ones as '.'.
std::string preview(const std::string& data) {
  std::string result;
  for (char c : data.substr(0, 40))
    result += (c >= 0x20 && c < 0x7f) ? c : '.';
  return result;
}

/// One TLS client handshake over a socket, with OpenSSL on memory BIOs so
/// that every wait is ours: bounded by the deadline, and no SIGPIPE.
class handshake {
public:
  handshake(int fd, SSL* ssl, steady::time_point deadline)
    : fd_(fd), deadline_(deadline), rbio_(SSL_get_rbio(ssl)),
      wbio_(SSL_get_wbio(ssl)), obs_(*observation_of(ssl)) {
  }

  /// Sends what OpenSSL wrote. Errors show up as EOF on the next receive.
  void flush() {
    char buf[4096];
    while (BIO_ctrl_pending(wbio_) > 0) {
      auto n = BIO_read(wbio_, buf, sizeof(buf));
      if (n <= 0)
        return;
      size_t sent = 0;
      while (sent < static_cast<size_t>(n)) {
        auto k = ::send(fd_, buf + sent, static_cast<size_t>(n) - sent,
                        MSG_NOSIGNAL);
        if (k > 0) {
          sent += static_cast<size_t>(k);
        } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          if (!wait(POLLOUT))
            return;
        } else if (k < 0 && errno == EINTR) {
          continue;
        } else {
          obs_.socket_error = errno;
          return;
        }
      }
    }
  }

  /// Feeds OpenSSL what arrives; false if the deadline passed first.
  bool receive() {
    if (!wait(POLLIN))
      return false;
    char buf[16384];
    auto n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      auto room = 64 - std::min<size_t>(64, obs_.first_bytes.size());
      obs_.first_bytes.append(buf,
                              std::min(room, static_cast<size_t>(n)));
      obs_.bytes_received += static_cast<size_t>(n);
      BIO_write(rbio_, buf, static_cast<int>(n));
      return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return true;
    if (n < 0)
      obs_.socket_error = errno;
    obs_.eof = true;
    BIO_set_mem_eof_return(rbio_, 0); // OpenSSL now sees the end of stream
    return true;
  }

private:
  bool wait(short events) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline_ - steady::now())
                    .count();
      if (left <= 0)
        return false;
      pollfd p{fd_, events, 0};
      auto r = ::poll(&p, 1, static_cast<int>(left));
      if (r > 0)
        return true;
      if (r < 0 && errno != EINTR)
        return true; // let recv/send report it
    }
  }

  int fd_;
  steady::time_point deadline_;
  BIO* rbio_;
  BIO* wbio_;
  observation& obs_;
};

/// Connects with TCP to `host:port` before `deadline`; returns the socket,
/// or -1 with `why` set.
int tcp_connect(const std::string& host, uint16_t port,
                steady::time_point deadline, const std::string& where,
                std::chrono::milliseconds timeout, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (auto rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
      rc != 0) {
    why = "cannot resolve the host name " + quoted(host) + " ("
          + ::gai_strerror(rc) + "): check the host in the peer's address";
    return -1;
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard{found, ::freeaddrinfo};
  int last_error = 0;
  bool timed_out = false;
  for (auto ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family,
                      ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      ai->ai_protocol);
    if (fd < 0) {
      last_error = errno;
      continue;
    }
    socket_guard sock{fd};
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno != EINPROGRESS) {
      last_error = errno;
      continue;
    }
    if (rc != 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - steady::now())
                    .count();
      pollfd p{fd, POLLOUT, 0};
      int ready = 0;
      do {
        ready = left > 0 ? ::poll(&p, 1, static_cast<int>(left)) : 0;
      } while (ready < 0 && errno == EINTR);
      if (ready == 0) {
        timed_out = true;
        break;
      }
      int so_error = 0;
      socklen_t len = sizeof(so_error);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
      if (so_error != 0) {
        last_error = so_error;
        continue;
      }
    }
    sock.fd = -1; // the caller owns it now
    return fd;
  }
  if (timed_out)
    why = "no TCP connection to " + where + " within "
          + std::to_string(timeout.count())
          + " ms (timeout): the host does not answer; it may be down, "
            "firewalled, or the address may be wrong";
  else if (last_error == ECONNREFUSED)
    why = "connection refused by " + where
          + ": nothing listens on that port; is the node running, and is "
            "the port right?";
  else
    why = "cannot connect to " + where + " (" + std::strerror(last_error)
          + "): check the address and the network";
  return -1;
}

/// Explains a handshake (or the read right after it) that failed.
std::string explain_failure(const observation& obs, const tls_files& files,
                            const std::string& where,
                            const std::string& reason) {
  // We refused the server.
  if (obs.verify_error != X509_V_OK) {
    auto whose = obs.verify_depth == 0
                   ? "the server's certificate (" + obs.verify_subject + ")"
                   : "the CA certificate " + obs.verify_subject
                       + " in the server's chain";
    if (obs.verify_error == X509_V_ERR_CERT_HAS_EXPIRED)
      return "the server at " + where + " presents an expired certificate: "
             + whose + " expired on " + obs.verify_not_after + " (valid from "
             + obs.verify_not_before + " to " + obs.verify_not_after
             + "); the server needs a new one (on a dev machine: "
               "config/make-dev-certs.sh --force)";
    if (obs.verify_error == X509_V_ERR_CERT_NOT_YET_VALID)
      return "the server at " + where + " presents a certificate that is "
             + "not yet valid: " + whose + " is not valid before "
             + obs.verify_not_before + "; check the clocks of both machines";
    if (is_untrusted_issuer(obs.verify_error))
      return "the server at " + where + " presents a certificate that is "
             + "not signed by our CA: " + whose + " is issued by "
             + obs.verify_issuer + ", which " + ca_source(files)
             + " does not trust (OpenSSL: "
             + X509_verify_cert_error_string(obs.verify_error)
             + "); give both nodes certificates from the same CA, or point "
               "openssl.cafile at the CA that signed the server's";
    return "we refused the certificate of the server at " + where + " ("
           + whose + "): "
           + X509_verify_cert_error_string(obs.verify_error);
  }
  // The server refused us.
  if (obs.alert_received >= 0) {
    auto alert = alert_name(obs.alert_received);
    bool offered_certificate = !files.certificate.empty();
    switch (obs.alert_received) {
      case SSL_AD_CERTIFICATE_REQUIRED:
      case SSL_AD_HANDSHAKE_FAILURE:
        if (!offered_certificate)
          return "the server at " + where + " requires a client certificate "
                 + "(mutual TLS) and we offered no client certificate (alert "
                 + alert + "): set openssl.certificate, openssl.key and "
                 + "openssl.cafile on this node too (" + dev_hint + ")";
        if (obs.alert_received == SSL_AD_CERTIFICATE_REQUIRED)
          break;
        return "the server at " + where + " refused the handshake (alert "
               + alert + "): no protocol or cipher in common; a node without "
               + "openssl.* keys speaks only anonymous TLS, so set the same "
               + "openssl.* keys on both nodes";
      case SSL_AD_UNKNOWN_CA:
        return "the server at " + where + " rejected our certificate (alert "
               + alert + "): it does not trust the CA that signed "
               + "openssl.certificate " + quoted(files.certificate)
               + "; give both nodes certificates from the same CA (the "
                 "server's openssl.cafile must hold the CA that signed ours)";
      case SSL_AD_CERTIFICATE_EXPIRED:
        return "the server at " + where + " rejected our certificate (alert "
               + alert + "): it considers openssl.certificate "
               + quoted(files.certificate)
               + " expired; check the clocks of both machines, or issue a "
                 "new one (config/make-dev-certs.sh --force)";
      case SSL_AD_BAD_CERTIFICATE:
      case SSL_AD_UNSUPPORTED_CERTIFICATE:
      case SSL_AD_CERTIFICATE_UNKNOWN:
      case SSL_AD_CERTIFICATE_REVOKED:
      case SSL_AD_DECRYPT_ERROR:
        return "the server at " + where + " rejected our certificate (alert "
               + alert + "): check that openssl.certificate "
               + quoted(files.certificate) + " comes from the CA in the "
               + "server's openssl.cafile and allows clientAuth ("
               + "config/make-dev-certs.sh issues such certificates)";
      case SSL_AD_PROTOCOL_VERSION:
        return "the server at " + where + " does not speak TLS 1.2 or newer "
               + "(alert " + alert + ")";
      default:
        break;
    }
    return "the server at " + where + " ended the handshake with alert "
           + alert + " (OpenSSL: " + reason + ")";
  }
  // Not TLS at all.
  if (obs.bytes_received > 0 && !looks_like_tls(obs.first_bytes))
    return "the peer at " + where + " does not speak TLS: it answered \""
           + preview(obs.first_bytes) + "\" instead of a TLS handshake; it "
           + "is a plaintext (not a TLS) port or another service: check the "
           + "port, and that both nodes use TLS";
  if (obs.eof && obs.bytes_received == 0)
    return "the peer at " + where + " closed the connection without "
           + "answering our TLS hello"
           + (obs.socket_error != 0
                ? " (" + std::string{std::strerror(obs.socket_error)} + ")"
                : std::string{})
           + ": it is probably not a TLS server (a plaintext port?), or it "
             "failed to load its own certificate or key (a CAF server then "
             "dies with \"cannot load private key\": check its log)";
  if (obs.eof)
    return "the server at " + where + " closed the connection during the "
           + "TLS handshake without saying why (no TLS alert): it may have "
           + "failed to load its own certificate or key (a CAF server then "
           + "dies with \"cannot load private key\": check its log)";
  return "the TLS handshake with " + where + " failed (OpenSSL: " + reason
         + ")";
}

} // namespace

std::string diagnose_handshake(const std::string& host, uint16_t port,
                               const tls_files& files,
                               std::chrono::milliseconds timeout) {
  error_queue_scope queue_scope;
  auto deadline = steady::now() + timeout;
  auto where = host.find(':') != std::string::npos
                 ? "[" + host + "]:" + std::to_string(port)
                 : host + ":" + std::to_string(port);
  auto within = std::to_string(timeout.count()) + " ms";
  bool authenticated = files.any();
  if (authenticated) {
    if (auto err = validate_tls(files)) {
      auto text = err.context().match_elements<std::string>()
                    ? err.context().get_as<std::string>(0)
                    : netchan::to_string(err);
      return "no handshake with " + where + " can succeed while this node's "
             + "own TLS files are unusable: " + text;
    }
  }
  // TCP.
  std::string why;
  socket_guard sock{tcp_connect(host, port, deadline, where, timeout, why)};
  if (sock.fd < 0)
    return why;
  // A client context set up as CAF sets up its own.
  ctx_ptr ctx{SSL_CTX_new(TLS_client_method())};
  if (!ctx)
    return "cannot test TLS: OpenSSL cannot create a context ("
           + openssl_reason() + ")";
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  passphrase_state pass{&files.passphrase};
  SSL_CTX_set_default_passwd_cb(ctx.get(), passphrase_callback);
  SSL_CTX_set_default_passwd_cb_userdata(ctx.get(), &pass);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT
                                              | SSL_SESS_CACHE_NO_INTERNAL);
  SSL_CTX_sess_set_new_cb(ctx.get(), new_session_callback);
  if (authenticated) {
    auto cafile = files.cafile.empty() ? nullptr : files.cafile.c_str();
    auto capath = files.capath.empty() ? nullptr : files.capath.c_str();
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.certificate.c_str())
          != 1
        || SSL_CTX_use_PrivateKey_file(ctx.get(), files.key.c_str(),
                                       SSL_FILETYPE_PEM)
             != 1
        || SSL_CTX_load_verify_locations(ctx.get(), cafile, capath) != 1
        || SSL_CTX_set_cipher_list(ctx.get(), "HIGH:!aNULL:!MD5") != 1)
      return "cannot load this node's TLS files for a test handshake "
             "(OpenSSL: "
             + openssl_reason() + ")";
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, verify_callback);
  } else {
    // CAF's anonymous mode: no certificates, an anonymous ECDH cipher.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    if (SSL_CTX_set_cipher_list(ctx.get(), "AECDH-AES256-SHA@SECLEVEL=0") != 1)
      return "cannot test anonymous TLS: this OpenSSL lacks CAF's cipher "
             "AECDH-AES256-SHA ("
             + openssl_reason() + ")";
  }
  ssl_ptr ssl{SSL_new(ctx.get())};
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  if (!ssl || rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    return "cannot test TLS: OpenSSL is out of memory";
  }
  BIO_set_mem_eof_return(rbio, -1); // empty means "wait", until EOF
  SSL_set_bio(ssl.get(), rbio, wbio);
  observation obs;
  SSL_set_ex_data(ssl.get(), observation_index(), &obs);
  SSL_set_info_callback(ssl.get(), info_callback);
  SSL_set_connect_state(ssl.get());
  handshake hs{sock.fd, ssl.get(), deadline};
  auto timed_out = [&] {
    return "the TLS handshake with " + where + " did not finish within "
           + within + " (timeout): the peer accepted the TCP connection but "
           + (obs.bytes_received == 0 ? "never answered our TLS hello"
                                      : "stopped answering")
           + "; it may be stalled or overloaded, or a service that is not "
             "TLS and waits for more input";
  };
  for (;;) {
    ERR_clear_error();
    auto rc = SSL_connect(ssl.get());
    auto err = SSL_get_error(ssl.get(), rc);
    auto reason = openssl_reason();
    hs.flush();
    if (rc == 1)
      break;
    if (err == SSL_ERROR_WANT_READ && !obs.eof) {
      if (!hs.receive())
        return timed_out();
      continue;
    }
    return explain_failure(obs, files, where, reason);
  }
  // TLS 1.3: the server checks our certificate after we consider the
  // handshake done; its verdict (an alert, or session tickets) arrives with
  // the first read.
  bool accepted = SSL_version(ssl.get()) != TLS1_3_VERSION;
  while (!accepted) {
    char buf[512];
    ERR_clear_error();
    auto rc = SSL_read(ssl.get(), buf, sizeof(buf));
    auto err = SSL_get_error(ssl.get(), rc);
    auto reason = openssl_reason();
    hs.flush();
    if (rc > 0 || obs.ticket_received) {
      accepted = true;
      break;
    }
    if (err == SSL_ERROR_WANT_READ && !obs.eof) {
      if (!hs.receive())
        break; // no verdict in time: report what we know
      continue;
    }
    if (obs.alert_received >= 0 || obs.eof || err != SSL_ERROR_ZERO_RETURN)
      return explain_failure(obs, files, where, reason);
    break;
  }
  std::string summary = "the TLS handshake with " + where + " succeeds ("
                        + SSL_get_version(ssl.get()) + ", "
                        + SSL_get_cipher_name(ssl.get());
  if (auto peer = SSL_get0_peer_certificate(ssl.get()))
    summary += ", server certificate " + describe(peer);
  summary += ")";
  // A polite close: a peer seeing a bare EOF queues an OpenSSL error.
  SSL_shutdown(ssl.get());
  hs.flush();
  if (accepted)
    return summary + ": TLS is not the problem";
  return summary + " and the server raised no objection to our certificate "
         + "within " + within;
}

} // namespace netchan::detail
