#pragma once

// A throw-away PKI for tests, made with OpenSSL's C API (no openssl CLI, no
// fixed files): a CA, and certificates it issues, good or broken on purpose.
// Files are named as config/make-dev-certs.sh names them: NAME.pem and
// NAME-key.pem. Every key is EC P-256 (fast to make). Functions throw
// std::runtime_error with OpenSSL's reason when OpenSSL fails.

#include <ctime>
#include <string>

namespace pki {

/// A certificate authority on disk.
struct authority {
  std::string name;        ///< its common name
  std::string certificate; ///< PEM certificate path (self-signed)
  std::string key;         ///< PEM private key path, unencrypted
};

/// When an issued certificate is valid.
enum class validity {
  valid,         ///< from an hour ago to a day from now
  expired,       ///< from two days ago to yesterday
  not_yet_valid, ///< from tomorrow to the day after
};

/// How to issue a certificate; the defaults make a good node certificate.
struct options {
  validity when = validity::valid;
  /// Non-empty: the key file is encrypted (PKCS#8, AES-256) with it.
  std::string passphrase;
  /// The key file holds a fresh key that does not belong to the certificate.
  bool mismatched_key = false;
  /// Signed by a new CA, NAME-other-ca in the same directory, instead of `ca`.
  bool other_ca = false;
  /// Signed by its own key (issuer = subject) instead of `ca`.
  bool self_signed = false;
  /// Which uses extendedKeyUsage allows (make-dev-certs.sh sets both).
  bool server_auth = true;
  bool client_auth = true;
};

/// An issued certificate on disk.
struct issued {
  std::string certificate; ///< PEM certificate path
  std::string key;         ///< PEM private key path
  std::string passphrase;  ///< the key's passphrase, empty if unencrypted
  std::time_t not_before = 0;
  std::time_t not_after = 0;
};

/// Makes a self-signed CA (valid from an hour ago for two days) as
/// `dir`/NAME.pem and `dir`/NAME-key.pem.
authority make_ca(const std::string& dir, const std::string& name);

/// Issues a certificate for common name `name` (subjectAltName DNS:localhost,
/// IP:127.0.0.1), signed by `ca` unless `opts` says otherwise, as
/// `dir`/NAME.pem and `dir`/NAME-key.pem.
issued issue(const authority& ca, const std::string& dir,
             const std::string& name, const options& opts = {});

/// A fresh directory under $TMPDIR (or /tmp), removed with its contents when
/// this object goes.
class temp_dir {
public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const {
    return path_;
  }

  /// `path()` + "/" + `name`.
  std::string operator/(const std::string& name) const {
    return path_ + "/" + name;
  }

private:
  std::string path_;
};

} // namespace pki
