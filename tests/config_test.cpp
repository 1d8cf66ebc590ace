#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

#include "netchan/config.hpp"
#include "netchan/errc.hpp"

namespace {

/// A configuration file in the test's working directory, removed at the end.
struct temp_file {
  explicit temp_file(const std::string& text)
    : path("config-test-" + std::to_string(::getpid()) + "-"
           + std::to_string(counter++) + ".conf") {
    std::ofstream out{path, std::ios::binary};
    out << text;
  }
  ~temp_file() {
    std::remove(path.c_str());
  }
  std::string path;
  static inline int counter = 0;
};

caf::error load(netchan::config& cfg, std::vector<std::string> args) {
  return cfg.load(std::move(args));
}

/// Asserts an invalid_config error whose sentence names `needle`.
void require_refusal(const caf::error& err, const std::string& needle) {
  BOOST_REQUIRE_MESSAGE(err, "expected a refusal naming " << needle);
  BOOST_CHECK(netchan::is(err, netchan::errc::invalid_config));
  auto text = netchan::to_string(err);
  BOOST_TEST_MESSAGE(text);
  BOOST_CHECK_MESSAGE(text.find(needle) != std::string::npos,
                      "'" << text << "' should name '" << needle << "'");
}

} // namespace

BOOST_AUTO_TEST_CASE(the_shipped_file_parses_and_binds_every_netchan_key) {
  netchan::config cfg;
  auto err = load(cfg, {"--config-file=" NETCHAN_SOURCE_DIR
                        "/caf-application.conf"});
  BOOST_REQUIRE_MESSAGE(!err, netchan::to_string(err));
  BOOST_CHECK_EQUAL(cfg.node_name, "node");
  BOOST_CHECK_EQUAL(cfg.max_message_size, 16u * 1024u * 1024u);
  BOOST_CHECK_EQUAL(cfg.default_capacity, 1u);
  BOOST_CHECK(cfg.resume_timeout == std::chrono::seconds{30});
  BOOST_CHECK(!cfg.insecure);
}

BOOST_AUTO_TEST_CASE(a_good_file_sets_values_and_the_command_line_overrides) {
  temp_file f{"[netchan]\nname=\"hub\"\nmax-message-size=1024\n"
              "default-capacity=0\nresume-timeout=2s\n"
              "peers=[\"127.0.0.1:7000\", \"127.0.0.1:7001\"]\n"
              "[middleman]\nheartbeat-interval=250ms\n"};
  netchan::config cfg;
  auto err = load(cfg, {"--config-file=" + f.path, "--netchan.name=worker"});
  BOOST_REQUIRE_MESSAGE(!err, netchan::to_string(err));
  BOOST_CHECK_EQUAL(cfg.source(), f.path);
  BOOST_CHECK_EQUAL(cfg.node_name, "worker");
  BOOST_CHECK_EQUAL(cfg.max_message_size, 1024u);
  BOOST_CHECK_EQUAL(cfg.default_capacity, 0u);
  BOOST_CHECK(cfg.resume_timeout == std::chrono::seconds{2});
  BOOST_REQUIRE_EQUAL(cfg.peers.size(), 2u);
  BOOST_CHECK_EQUAL(cfg.peers[1], "127.0.0.1:7001");
}

BOOST_AUTO_TEST_CASE(without_a_file_the_built_in_defaults_apply) {
  // The test runs in the build tree, where no caf-application.conf exists.
  std::ifstream probe{netchan::config::default_file};
  BOOST_REQUIRE(!probe.good());
  netchan::config cfg;
  auto err = load(cfg, {});
  BOOST_REQUIRE_MESSAGE(!err, netchan::to_string(err));
  BOOST_CHECK_EQUAL(cfg.source(), "built-in defaults");
  BOOST_CHECK_EQUAL(cfg.node_name, "node");
  std::string builtin = netchan::config::builtin_defaults();
  BOOST_CHECK(builtin.find("[netchan]") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_wrong_typed_netchan_value_is_refused_naming_the_key) {
  temp_file f{"[netchan]\nmax-message-size=\"big\"\n"};
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=" + f.path}),
                  "netchan.max-message-size");
}

BOOST_AUTO_TEST_CASE(a_mistyped_heartbeat_is_refused_not_silently_dropped) {
  temp_file f{"[middleman]\nheartbeat-interval=\"1s\"\n"};
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=" + f.path}),
                  "middleman.heartbeat-interval");
}

BOOST_AUTO_TEST_CASE(a_mistyped_connection_timeout_is_refused) {
  temp_file f{"[middleman]\nconnection-timeout=10\n"};
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=" + f.path}),
                  "middleman.connection-timeout");
}

BOOST_AUTO_TEST_CASE(a_scheduler_policy_given_as_a_string_is_refused) {
  temp_file f{"[scheduler]\npolicy=\"sharing\"\n"};
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=" + f.path}), "scheduler.policy");
}

BOOST_AUTO_TEST_CASE(automatic_connections_are_refused) {
  temp_file f{"[middleman]\nenable-automatic-connections=true\n"};
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=" + f.path}),
                  "enable-automatic-connections");
}

BOOST_AUTO_TEST_CASE(a_misspelt_netchan_key_is_refused_naming_it) {
  temp_file f{"[netchan]\nmax-mesage-size=1024\n"};
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=" + f.path}),
                  "netchan.max-mesage-size");
}

BOOST_AUTO_TEST_CASE(a_missing_file_given_on_the_command_line_is_refused) {
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=no-such-dir/none.conf"}),
                  "no-such-dir/none.conf");
}

BOOST_AUTO_TEST_CASE(a_file_that_does_not_parse_is_refused_naming_it) {
  temp_file f{"[netchan]\nname=unquoted words\n"};
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=" + f.path}), f.path);
}

BOOST_AUTO_TEST_CASE(windows_line_endings_are_refused_with_the_fix) {
  temp_file f{"[netchan]\r\nname=\"x\"\r\n"};
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=" + f.path}), "dos2unix");
}

BOOST_AUTO_TEST_CASE(a_wrong_typed_command_line_value_is_refused) {
  temp_file f{"[netchan]\nname=\"x\"\n"};
  netchan::config cfg;
  auto err = load(cfg, {"--config-file=" + f.path,
                        "--netchan.max-message-size=lots"});
  BOOST_REQUIRE(err);
  BOOST_CHECK(netchan::is(err, netchan::errc::invalid_config));
}

BOOST_AUTO_TEST_CASE(a_key_set_twice_in_a_file_is_refused_naming_it) {
  // CAF 0.17 would bind the second value but report and check the first.
  temp_file f{"[openssl]\ncafile=\"ca.pem\"\ncafile=\"\"\n"};
  netchan::config cfg;
  require_refusal(load(cfg, {"--config-file=" + f.path}), "openssl.cafile");
}
