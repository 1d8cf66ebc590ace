#pragma once

// Certificates for node tests: a thin layer over pki.hpp that also turns
// them into the command-line options a netchan::config reads.

#include <string>
#include <vector>

#include "pki.hpp"

namespace test {

enum class cert_kind { valid, expired, encrypted };

struct node_certs {
  std::string certificate;
  std::string key;
  std::string cafile;
  std::string passphrase;

  /// The [openssl] options for a node using these files.
  std::vector<std::string> args() const {
    std::vector<std::string> result{"--openssl.certificate=" + certificate,
                                    "--openssl.key=" + key,
                                    "--openssl.cafile=" + cafile};
    if (!passphrase.empty())
      result.push_back("--openssl.passphrase=" + passphrase);
    return result;
  }
};

/// A certificate authority in `dir` that issues node certificates.
class pki {
public:
  pki(const std::string& dir, const std::string& name)
    : dir_(dir), ca_(::pki::make_ca(dir, name)) {
  }

  node_certs issue(const std::string& name,
                   cert_kind kind = cert_kind::valid) const {
    ::pki::options opts;
    if (kind == cert_kind::expired)
      opts.when = ::pki::validity::expired;
    if (kind == cert_kind::encrypted)
      opts.passphrase = "right horse battery";
    auto files = ::pki::issue(ca_, dir_, ca_.name + "-" + name, opts);
    return {files.certificate, files.key, ca_.certificate, files.passphrase};
  }

private:
  std::string dir_;
  ::pki::authority ca_;
};

} // namespace test
