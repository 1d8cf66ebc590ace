// Channel and node addresses as users and peers write them: "host:port" and
// "host:port/name" (IPv6 hosts in brackets), parsed by the directory.
//
// Invariants: a refusal is errc::invalid_argument with a sentence; an
// accepted address has a host that needs no quoting, and printing it again
// (as the directory does, and bracketed) parses to the same address.

#include <string>

#include "node/directory.hpp"
#include "fuzz.hpp"

namespace {

using netchan::detail::channel_address;
using netchan::fuzz::require;

std::string show(const channel_address& x) {
  return "{host '" + x.host + "', port " + std::to_string(x.port)
         + ", name '" + x.name + "'}";
}

void require_same(const channel_address& x, const channel_address& y,
                  const std::string& printed) {
  require(x.host == y.host && x.port == y.port && x.name == y.name,
          "'" + printed + "' parses to " + show(y) + ", not " + show(x));
}

void check_host(const channel_address& x) {
  require(!x.host.empty(), "accepted an empty host");
  require(x.host.find_first_of("[]/") == std::string::npos,
          "accepted host '" + x.host + "', which cannot be printed back");
  static_cast<void>(netchan::detail::is_loopback(x.host));
}

void check_host_port(const std::string& text) {
  auto parsed = netchan::detail::parse_host_port(text);
  if (!parsed) {
    netchan::fuzz::require_refusal(parsed.error(),
                                   netchan::errc::invalid_argument,
                                   "parse_host_port");
    return;
  }
  check_host(*parsed);
  require(parsed->name.empty(), "parse_host_port set a channel name");
  auto plain = parsed->node();
  auto again = netchan::detail::parse_host_port(plain);
  require(static_cast<bool>(again), "'" + plain + "' (printed) is refused");
  require_same(*parsed, *again, plain);
  auto bracketed = "[" + parsed->host + "]:" + std::to_string(parsed->port);
  auto third = netchan::detail::parse_host_port(bracketed);
  require(static_cast<bool>(third), "'" + bracketed + "' is refused");
  require_same(*parsed, *third, bracketed);
}

void check_channel_address(const std::string& text) {
  auto parsed = netchan::detail::parse_channel_address(text);
  if (!parsed) {
    netchan::fuzz::require_refusal(parsed.error(),
                                   netchan::errc::invalid_argument,
                                   "parse_channel_address");
    return;
  }
  check_host(*parsed);
  require(!parsed->name.empty()
            && parsed->name.find('/') == std::string::npos,
          "accepted channel name '" + parsed->name + "'");
  auto printed = parsed->node() + "/" + parsed->name;
  auto again = netchan::detail::parse_channel_address(printed);
  require(static_cast<bool>(again), "'" + printed + "' (printed) is refused");
  require_same(*parsed, *again, printed);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text{reinterpret_cast<const char*>(data), size};
  check_host_port(text);
  check_channel_address(text);
  return 0;
}

namespace netchan::fuzz {

std::vector<seed> seeds() {
  return {
    {"ipv4-node", "127.0.0.1:7000"},
    {"ipv4-channel", "127.0.0.1:7000/jobs"},
    {"ipv6-bracketed-channel", "[::1]:7000/jobs"},
    {"ipv6-bare-node", "::1:7000"},
    {"dns-port-zero", "localhost:0/results"},
    {"max-port", "node-a.example.com:65535/a"},
    {"leading-zeros", "10.0.0.1:00080/x"},
    {"anonymous-channel", "127.0.0.1:7000/#3"},
    {"port-too-large", "127.0.0.1:65536/jobs"},
    {"port-too-long", "127.0.0.1:123456/jobs"},
    {"negative-port", "127.0.0.1:-1/jobs"},
    {"no-port", "127.0.0.1:/jobs"},
    {"no-host", ":7000/jobs"},
    {"no-name", "127.0.0.1:7000/"},
    {"only-name", "/jobs"},
    {"empty-brackets", "[]:7000/jobs"},
    {"nested-brackets", "[[::1]]:7000/jobs"},
    {"unbalanced-bracket", "[::1:7000/jobs"},
    {"slash-in-host", "a/b:7000/jobs"},
    {"empty", ""},
  };
}

} // namespace netchan::fuzz
