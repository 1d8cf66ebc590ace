#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/error.hpp>

namespace netchan::detail {

/// The `openssl.*` keys of a node's configuration: the files CAF's OpenSSL
/// module reads on every connection.
struct tls_files {
  std::string certificate;
  std::string key;
  std::string passphrase;
  std::string cafile;
  std::string capath;

  /// Returns whether any key is set. CAF then switches to mutual TLS with
  /// certificates; with none set it uses anonymous TLS. A passphrase alone
  /// counts too, because CAF's `authentication_enabled()` counts it.
  bool any() const;
};

/// Checks, with OpenSSL, what CAF 0.17 would only discover on the first
/// connection (a server then dies with "cannot load private key", a client
/// hangs): certificate, key and CA (cafile or capath) are all given; the
/// files exist and are readable; they parse as PEM; the key matches the
/// certificate; the certificate is valid now; it chains to the CA for both
/// TLS server and TLS client use; an encrypted key has the right passphrase.
/// Never prompts on the terminal. Returns `caf::none`, or
/// `errc::invalid_config` with a sentence naming the key, the file and the
/// fix. Returns `caf::none` when `!files.any()` (anonymous TLS: nothing to
/// check). Leaves the calling thread's OpenSSL error queue empty.
caf::error validate_tls(const tls_files& files);

/// Tells why a TLS connection to `host:port` fails, which CAF reports only as
/// `disconnect_during_handshake` or `cannot_connect_to_node`. Connects with
/// TCP, then runs a TLS (>= 1.2) client handshake as CAF would, with the same
/// certificate, key and CA and verification on (or anonymously, as CAF does,
/// when `!files.any()`), and returns a sentence naming the cause: connection
/// refused, the peer does not speak TLS, the server's certificate is not
/// signed by our CA or expired, the server rejected our certificate (or we
/// offered none), a timeout, or OpenSSL's own reason. Also says when the
/// handshake succeeds. Bounded by `timeout` overall, name resolution aside.
/// Never prompts on the terminal; leaves the thread's OpenSSL error queue
/// empty; never raises SIGPIPE.
std::string diagnose_handshake(const std::string& host, uint16_t port,
                               const tls_files& files,
                               std::chrono::milliseconds timeout);

/// Makes inbound TLS handshakes that are not finished `limit` after they
/// began fail, so CAF closes their connections (CAF 0.17 never would; see
/// openssl_shim.cpp). Process-wide: the largest limit asked for wins, so no
/// node of the process cuts a handshake another node's configuration allows.
void limit_tls_handshakes(std::chrono::milliseconds limit);

/// Returns whether libnetchan's wrappers of `SSL_read`, `SSL_write`,
/// `SSL_accept` and `SSL_connect` (which clear OpenSSL's per-thread error
/// queue, see openssl_shim.cpp) are the definitions the process uses. False
/// means CAF's TLS connections can be closed by a stale error left behind by
/// another peer's death: node start-up should warn.
bool openssl_error_queue_fix_active();

} // namespace netchan::detail
