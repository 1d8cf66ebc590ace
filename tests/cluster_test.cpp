// The cluster demo as a user meets it: netchan-demo-run starts the nodes of
// config/cluster as processes and must end with balanced books, plainly and
// with a worker killed half-way; netchan-node refuses a bad start with a
// message that says what to fix.
#define BOOST_TEST_MODULE cluster
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <fstream>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pki.hpp"
#include "process.hpp"

using namespace std::chrono_literals;

namespace {

const std::string certs = NETCHAN_DEMO_CERTS;

/// Runs a program to its end; returns its output (stdout and stderr) and
/// exit status.
std::pair<std::string, int> run(const std::string& program,
                                const std::vector<std::string>& args,
                                std::chrono::seconds deadline) {
  test::child p{program, args, {}, true};
  auto until = std::chrono::steady_clock::now() + deadline;
  while (!p.output_closed() && std::chrono::steady_clock::now() < until)
    p.read_line(100ms);
  auto status = p.wait(5s);
  return {p.transcript(), status};
}

/// The value of "key=value" in the summary line of `out`.
long summary_field(const std::string& out, const std::string& key) {
  auto line = out.find("\nsummary ");
  BOOST_REQUIRE_MESSAGE(line != std::string::npos, "no summary line:\n" << out);
  auto end = out.find('\n', line + 1);
  auto summary = out.substr(line, end - line);
  auto at = summary.find(" " + key + "=");
  BOOST_REQUIRE_MESSAGE(at != std::string::npos,
                        "summary without " << key << ": " << summary);
  return std::stol(summary.substr(at + key.size() + 2));
}

std::vector<std::string> demo_args(const ::pki::temp_dir& logs) {
  return {"--config-dir", std::string{NETCHAN_SOURCE_DIR} + "/config/cluster",
          "--certs",      certs,
          "--logs",       logs.path(),
          "--jobs",       "60"};
}

/// netchan-node with the hub's dev certificate and `args`.
std::pair<std::string, int> node(std::vector<std::string> args) {
  args.push_back("--openssl.certificate=" + certs + "/hub.pem");
  args.push_back("--openssl.key=" + certs + "/hub-key.pem");
  args.push_back("--openssl.cafile=" + certs + "/ca.pem");
  return run(NETCHAN_NODE, args, 60s);
}

void check_names(const std::string& out, const std::string& needle) {
  BOOST_TEST_MESSAGE(out);
  BOOST_CHECK_MESSAGE(out.find(needle) != std::string::npos,
                      "the output should name '" << needle << "':\n" << out);
}

} // namespace

BOOST_AUTO_TEST_CASE(the_demo_balances_its_books) {
  ::pki::temp_dir logs;
  auto [out, status] = run(NETCHAN_DEMO_RUN, demo_args(logs), 240s);
  BOOST_TEST_MESSAGE(out);
  BOOST_CHECK_EQUAL(status, 0);
  BOOST_CHECK_EQUAL(summary_field(out, "produced"), 60);
  BOOST_CHECK_EQUAL(summary_field(out, "completed"), 60);
  BOOST_CHECK_EQUAL(summary_field(out, "lost"), 0);
  BOOST_CHECK_EQUAL(summary_field(out, "duplicated"), 0);
  BOOST_CHECK_GE(summary_field(out, "workers"), 1);
  check_names(out, "stopped 5 processes");
}

BOOST_AUTO_TEST_CASE(a_worker_killed_half_way_costs_nothing) {
  ::pki::temp_dir logs;
  auto args = demo_args(logs);
  args.push_back("--chaos");
  auto [out, status] = run(NETCHAN_DEMO_RUN, args, 240s);
  BOOST_TEST_MESSAGE(out);
  BOOST_CHECK_EQUAL(status, 0);
  check_names(out, "chaos: killed worker-1");
  BOOST_CHECK_EQUAL(summary_field(out, "produced"), 60);
  BOOST_CHECK_EQUAL(summary_field(out, "completed"), 60);
  BOOST_CHECK_EQUAL(summary_field(out, "lost"), 0);
  BOOST_CHECK_EQUAL(summary_field(out, "duplicated"), 0);
  BOOST_CHECK_GE(summary_field(out, "redelivered"), 1);
}

// -- clear errors at start ------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_key_of_the_wrong_type_is_named) {
  ::pki::temp_dir dir;
  auto file = dir.path() + "/bad.conf";
  std::ofstream{file} << "[netchan]\nrole=\"hub\"\nrequest-timeout=\"soon\"\n";
  auto [out, status] = node({"--config-file=" + file});
  BOOST_CHECK_EQUAL(status, 1);
  check_names(out, "netchan.request-timeout");
}

BOOST_AUTO_TEST_CASE(a_missing_certificate_is_named) {
  auto [out, status] = run(NETCHAN_NODE,
                           {"--netchan.role=hub",
                            "--openssl.certificate=/nonexistent/hub.pem",
                            "--openssl.key=" + certs + "/hub-key.pem",
                            "--openssl.cafile=" + certs + "/ca.pem"},
                           60s);
  BOOST_CHECK_EQUAL(status, 1);
  check_names(out, "/nonexistent/hub.pem");
}

BOOST_AUTO_TEST_CASE(a_port_in_use_is_named) {
  auto [fd, port] = test::listening_socket();
  auto where = "127.0.0.1:" + std::to_string(port);
  auto [out, status] = node({"--netchan.role=hub", "--netchan.listen=" + where});
  ::close(fd);
  BOOST_CHECK_EQUAL(status, 1);
  check_names(out, "cannot listen on " + where);
}

BOOST_AUTO_TEST_CASE(an_unreachable_peer_is_named_after_its_retry_window) {
  auto [fd, port] = test::listening_socket();
  ::close(fd); // nobody listens there now
  auto where = "127.0.0.1:" + std::to_string(port);
  auto [out, status] = node({"--netchan.role=worker",
                             "--netchan.peers=[\"" + where + "\"]",
                             "--netchan.peer-wait=1s"});
  BOOST_CHECK_EQUAL(status, 1);
  check_names(out, "peer " + where);
  check_names(out, "within netchan.peer-wait");
}

BOOST_AUTO_TEST_CASE(a_channel_of_an_unknown_type_is_named) {
  auto [out, status] = node({"--netchan.role=hub",
                             "--netchan.channels=[\"jobs:no::such:0\"]"});
  BOOST_CHECK_EQUAL(status, 1);
  check_names(out, "no::such");
}

BOOST_AUTO_TEST_CASE(an_unknown_role_is_named) {
  auto [out, status] = node({"--netchan.role=boss"});
  BOOST_CHECK_EQUAL(status, 1);
  check_names(out, "\"boss\" is unknown");
}
