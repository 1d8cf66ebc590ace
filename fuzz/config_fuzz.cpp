// Configuration files (CAF 0.17's INI dialect) and command-line overrides,
// read by netchan::config::load. The input is the file's text; bytes after a
// NUL, if any, are command-line arguments, one per line.
//
// Invariants: load never crashes; a refusal is errc::invalid_config with a
// sentence; in an accepted configuration every bound member holds the value
// CAF reports for its key (CAF 0.17 alone drops mistyped values silently, and
// binds the last of repeated keys but reports the first).

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <caf/config_value.hpp>
#include <caf/settings.hpp>

#include "fuzz.hpp"
#include "netchan/config.hpp"

namespace {

using netchan::fuzz::require;

/// The file `--config-file` names: one per process, rewritten per input.
class scratch_file {
public:
  scratch_file() {
    const char* dir = std::getenv("TMPDIR");
    std::string pattern = std::string{dir != nullptr ? dir : "/tmp"}
                          + "/netchan-fuzz-config-XXXXXX";
    std::vector<char> buf{pattern.begin(), pattern.end()};
    buf.push_back('\0');
    auto fd = ::mkstemp(buf.data());
    if (fd < 0)
      netchan::fuzz::violated("cannot create a scratch file in " + pattern);
    ::close(fd);
    path_ = buf.data();
  }

  ~scratch_file() {
    std::remove(path_.c_str());
  }

  const std::string& write(const std::string& text) {
    std::ofstream out{path_, std::ios::binary | std::ios::trunc};
    out << text;
    out.close();
    if (!out)
      netchan::fuzz::violated("cannot write " + path_);
    return path_;
  }

private:
  std::string path_;
};

/// A configuration that lets the target compare bound members with the
/// settings CAF reports.
class inspected_config : public netchan::config {
public:
  /// Every option bound to a member and present in `content` holds the same
  /// value in both: what CAF and netchan read is what the program runs with.
  void require_consistent() const {
    for (auto& opt : custom_options_) {
      auto bound = opt.get();
      if (!bound)
        continue;
      auto raw = caf::get_if(&content, opt.full_name());
      if (raw == nullptr)
        continue;
      std::string key{opt.full_name().begin(), opt.full_name().end()};
      require(*raw == *bound, "accepted " + key + " = " + caf::to_string(*raw)
                                + ", but the member holds "
                                + caf::to_string(*bound));
    }
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static scratch_file file;
  std::string input{reinterpret_cast<const char*>(data), size};
  auto nul = input.find('\0');
  auto& path = file.write(input.substr(0, nul));
  std::vector<std::string> args{"--config-file=" + path};
  if (nul != std::string::npos) {
    auto rest = input.substr(nul + 1);
    for (size_t pos = 0; pos <= rest.size();) {
      auto end = rest.find('\n', pos);
      if (end == std::string::npos)
        end = rest.size();
      auto arg = rest.substr(pos, end - pos);
      // Another file would read outside the input (or forever: /dev/zero).
      if (arg.compare(0, 13, "--config-file") != 0)
        args.push_back(std::move(arg));
      pos = end + 1;
    }
  }
  inspected_config cfg;
  if (auto err = cfg.load(args)) {
    netchan::fuzz::require_refusal(err, netchan::errc::invalid_config,
                                   "config::load");
    return 0;
  }
  cfg.require_consistent();
  return 0;
}

// -- seeds --------------------------------------------------------------------

namespace netchan::fuzz {

std::vector<seed> seeds() {
  std::string shipped = config::builtin_defaults();
  std::string args{'\0'};
  return {
    {"shipped", shipped},
    {"shipped-with-overrides",
     shipped + args + "--netchan.name=worker\n--netchan.listen=127.0.0.1:0\n"
       + "--netchan.peers=[\"127.0.0.1:7000\"]"},
    {"good",
     "[netchan]\nname=\"hub\"\nmax-message-size=1024\ndefault-capacity=0\n"
     "resume-timeout=2s\npeers=[\"127.0.0.1:7000\", \"127.0.0.1:7001\"]\n"
     "[middleman]\nheartbeat-interval=250ms\n"},
    {"empty", ""},
    {"comment-only", "; nothing here\n"},
    {"string-for-size", "[netchan]\nmax-message-size=\"big\"\n"},
    {"negative-size", "[netchan]\nmax-message-size=-1\n"},
    {"string-for-timespan", "[middleman]\nheartbeat-interval=\"1s\"\n"},
    {"number-for-timespan", "[middleman]\nconnection-timeout=10\n"},
    {"string-for-atom", "[scheduler]\npolicy=\"sharing\"\n"},
    {"automatic-connections",
     "[middleman]\nenable-automatic-connections=true\n"},
    {"unknown-netchan-key", "[netchan]\nmax-mesage-size=1024\n"},
    {"unquoted-words", "[netchan]\nname=unquoted words\n"},
    {"crlf", "[netchan]\r\nname=\"x\"\r\n"},
    {"unclosed-section", "[netchan\nname=\"x\"\n"},
    {"nested-list", "[netchan]\npeers=[[\"a:1\"], 2]\n"},
    {"map-value", "[netchan]\nlisten={host=\"127.0.0.1\", port=0}\n"},
    {"bad-override", std::string{"[netchan]\n"} + args
                       + "--netchan.max-message-size=abc"},
    {"unknown-argument", std::string{} + args + "stray"},
    {"repeated-key", "[netchan]\nname=\"a\"\nname=\"b\"\n"},
    {"repeated-section",
     "[openssl]\ncafile=\"ca.pem\"\n[openssl]\ncafile=\"\"\n"},
  };
}

} // namespace netchan::fuzz
