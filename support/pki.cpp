#include "pki.hpp"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <vector>

#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace pki {

namespace {

template <class T, void (*Free)(T*)>
struct openssl_deleter {
  void operator()(T* ptr) const {
    Free(ptr);
  }
};

using pkey_ptr
  = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY, EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509, X509_free>>;
using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO, BIO_free_all>>;
using ext_ptr = std::unique_ptr<X509_EXTENSION,
                                openssl_deleter<X509_EXTENSION,
                                                X509_EXTENSION_free>>;

/// Throws with OpenSSL's reason; also empties the thread's error queue so
/// that no later TLS call in the test trips over it.
[[noreturn]] void fail(const std::string& what) {
  std::string reason = "no reason given";
  if (auto code = ERR_peek_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    reason = buf;
  }
  ERR_clear_error();
  throw std::runtime_error("pki: " + what + " failed: " + reason);
}

pkey_ptr make_key() {
  pkey_ptr key{EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")};
  if (!key)
    fail("generating an EC P-256 key");
  return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ext_ptr ext{X509V3_EXT_conf_nid(nullptr, &ctx, nid, value)};
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    fail(std::string{"adding extension "} + OBJ_nid2sn(nid) + "=" + value);
}

/// A certificate for `subject_name` with `key`'s public half, not yet signed.
x509_ptr make_cert(const std::string& subject_name, EVP_PKEY* key,
                   std::time_t not_before, std::time_t not_after) {
  x509_ptr cert{X509_new()};
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1)
    fail("creating a certificate");
  unsigned char serial_bytes[8];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1)
    fail("drawing a serial number");
  uint64_t serial = 0;
  for (auto b : serial_bytes)
    serial = (serial << 8) | b;
  serial >>= 1; // positive, and never zero in practice
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial | 1);
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), not_before) == nullptr
      || ASN1_TIME_set(X509_getm_notAfter(cert.get()), not_after) == nullptr)
    fail("setting validity dates");
  auto name = X509_get_subject_name(cert.get());
  auto text = reinterpret_cast<const unsigned char*>(subject_name.c_str());
  auto org = reinterpret_cast<const unsigned char*>("netchan tests");
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, org, -1, -1, 0) != 1
      || X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, text, -1, -1, 0)
           != 1)
    fail("setting the subject name " + subject_name);
  if (X509_set_pubkey(cert.get(), key) != 1)
    fail("setting the public key");
  return cert;
}

void write_cert(X509* cert, const std::string& path) {
  bio_ptr out{BIO_new_file(path.c_str(), "w")};
  if (!out || PEM_write_bio_X509(out.get(), cert) != 1)
    fail("writing " + path);
}

void write_key(EVP_PKEY* key, const std::string& path,
               const std::string& passphrase) {
  bio_ptr out{BIO_new_file(path.c_str(), "w")};
  if (!out)
    fail("creating " + path);
  ::chmod(path.c_str(), 0600);
  int ok = 0;
  if (passphrase.empty()) {
    ok = PEM_write_bio_PrivateKey(out.get(), key, nullptr, nullptr, 0, nullptr,
                                  nullptr);
  } else {
    auto pass = reinterpret_cast<const unsigned char*>(passphrase.data());
    ok = PEM_write_bio_PrivateKey(out.get(), key, EVP_aes_256_cbc(), pass,
                                  static_cast<int>(passphrase.size()), nullptr,
                                  nullptr);
  }
  if (ok != 1)
    fail("writing " + path);
}

x509_ptr read_cert(const std::string& path) {
  bio_ptr in{BIO_new_file(path.c_str(), "r")};
  x509_ptr cert{in ? PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr)
                   : nullptr};
  if (!cert)
    fail("reading " + path);
  return cert;
}

pkey_ptr read_key(const std::string& path) {
  bio_ptr in{BIO_new_file(path.c_str(), "r")};
  // An empty passphrase, never the terminal prompt.
  auto no_prompt = [](char*, int, int, void*) { return -1; };
  pkey_ptr key{in ? PEM_read_bio_PrivateKey(in.get(), nullptr, no_prompt,
                                            nullptr)
                  : nullptr};
  if (!key)
    fail("reading " + path);
  return key;
}

constexpr std::time_t hour = 3600;
constexpr std::time_t day = 24 * hour;

} // namespace

authority make_ca(const std::string& dir, const std::string& name) {
  auto key = make_key();
  auto now = std::time(nullptr);
  auto cert = make_cert(name, key.get(), now - hour, now + 2 * day);
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) != 1)
    fail("setting the issuer name");
  add_extension(cert.get(), cert.get(), NID_basic_constraints,
                "critical,CA:TRUE");
  add_extension(cert.get(), cert.get(), NID_key_usage,
                "critical,keyCertSign,cRLSign");
  add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
    fail("signing CA " + name);
  authority ca{name, dir + "/" + name + ".pem", dir + "/" + name + "-key.pem"};
  write_cert(cert.get(), ca.certificate);
  write_key(key.get(), ca.key, {});
  return ca;
}

issued issue(const authority& ca, const std::string& dir,
             const std::string& name, const options& opts) {
  auto now = std::time(nullptr);
  issued result;
  switch (opts.when) {
    case validity::valid:
      result.not_before = now - hour;
      result.not_after = now + day;
      break;
    case validity::expired:
      result.not_before = now - 2 * day;
      result.not_after = now - day;
      break;
    case validity::not_yet_valid:
      result.not_before = now + day;
      result.not_after = now + 2 * day;
      break;
  }
  auto key = make_key();
  auto cert = make_cert(name, key.get(), result.not_before, result.not_after);
  // The signer: ourselves, a fresh CA, or `ca`.
  x509_ptr issuer_cert;
  pkey_ptr issuer_key;
  if (!opts.self_signed) {
    auto signer = opts.other_ca ? make_ca(dir, name + "-other-ca") : ca;
    issuer_cert = read_cert(signer.certificate);
    issuer_key = read_key(signer.key);
  }
  auto issuer = opts.self_signed ? cert.get() : issuer_cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer)) != 1)
    fail("setting the issuer name");
  add_extension(cert.get(), issuer, NID_basic_constraints, "CA:FALSE");
  add_extension(cert.get(), issuer, NID_key_usage,
                "critical,digitalSignature,keyAgreement");
  std::string eku;
  if (opts.server_auth)
    eku = "serverAuth";
  if (opts.client_auth)
    eku += eku.empty() ? "clientAuth" : ",clientAuth";
  if (!eku.empty())
    add_extension(cert.get(), issuer, NID_ext_key_usage, eku.c_str());
  add_extension(cert.get(), issuer, NID_subject_alt_name,
                "DNS:localhost,IP:127.0.0.1");
  add_extension(cert.get(), issuer, NID_subject_key_identifier, "hash");
  if (!opts.self_signed)
    add_extension(cert.get(), issuer, NID_authority_key_identifier, "keyid");
  auto signer_key = opts.self_signed ? key.get() : issuer_key.get();
  if (X509_sign(cert.get(), signer_key, EVP_sha256()) == 0)
    fail("signing " + name);
  result.certificate = dir + "/" + name + ".pem";
  result.key = dir + "/" + name + "-key.pem";
  result.passphrase = opts.passphrase;
  write_cert(cert.get(), result.certificate);
  if (opts.mismatched_key)
    write_key(make_key().get(), result.key, opts.passphrase);
  else
    write_key(key.get(), result.key, opts.passphrase);
  return result;
}

temp_dir::temp_dir() {
  auto base = std::getenv("TMPDIR");
  std::string pattern = std::string{base != nullptr && *base != '\0'
                                      ? base
                                      : "/tmp"}
                        + "/netchan-test-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr)
    throw std::runtime_error("pki: cannot create a directory like "
                             + pattern);
  path_ = buf.data();
}

temp_dir::~temp_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

} // namespace pki
