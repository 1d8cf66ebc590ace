#include "netchan/config.hpp"

#include <fstream>
#include <sstream>

#include <caf/actor_system.hpp>
#include <caf/config_option_adder.hpp>
#include <caf/config_value.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/settings.hpp>

#include "netchan/envelope.hpp"
#include "netchan/errc.hpp"
#include "netchan/stats.hpp"
#include "wire/batch.hpp"

namespace netchan {

void add_netchan_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<envelope>("netchan::envelope");
  cfg.add_message_type<detail::batch>("netchan::batch");
  cfg.add_message_type<channel_stats>("netchan::channel_stats");
  cfg.add_message_type<std::vector<uint64_t>>("netchan::lease_ids");
  cfg.add_error_category(errc_category, render_error);
}

size_t max_message_size_of(const caf::actor_system& sys) {
  auto cfg = dynamic_cast<const config*>(&sys.config());
  return cfg != nullptr ? cfg->max_message_size : default_max_message_size;
}

namespace {

caf::error config_error(std::string sentence) {
  return make_error(errc::invalid_config, std::move(sentence));
}

/// A CAF key netchan depends on, with the check CAF 0.17 does not make.
struct relied_on_key {
  const char* name;
  const char* expects;
  bool (*accepts)(const caf::config_value&);
};

bool is_timespan(const caf::config_value& x) {
  return caf::holds_alternative<caf::timespan>(x);
}

bool is_count(const caf::config_value& x) {
  auto i = caf::get_if<int64_t>(&x);
  return i != nullptr && *i >= 0;
}

bool is_positive_count(const caf::config_value& x) {
  auto i = caf::get_if<int64_t>(&x);
  return i != nullptr && *i > 0;
}

bool is_scheduler_policy(const caf::config_value& x) {
  auto a = caf::get_if<caf::atom_value>(&x);
  return a != nullptr
         && (*a == caf::atom("stealing") || *a == caf::atom("sharing")
             || *a == caf::atom("testing"));
}

bool is_false(const caf::config_value& x) {
  auto b = caf::get_if<bool>(&x);
  return b != nullptr && !*b;
}

bool is_string(const caf::config_value& x) {
  return caf::holds_alternative<std::string>(x);
}

const relied_on_key relied_on_keys[] = {
  {"middleman.heartbeat-interval", "a timespan such as 1s or 500ms",
   is_timespan},
  {"middleman.connection-timeout", "a timespan such as 10s", is_timespan},
  {"middleman.workers", "a whole number >= 0", is_count},
  {"middleman.enable-automatic-connections",
   "false (automatic connections open a plaintext port)", is_false},
  {"scheduler.policy", "'stealing' or 'sharing' (an atom, in single quotes)",
   is_scheduler_policy},
  {"scheduler.max-threads", "a whole number > 0", is_positive_count},
  {"openssl.certificate", "a quoted path", is_string},
  {"openssl.key", "a quoted path", is_string},
  {"openssl.passphrase", "a quoted string", is_string},
  {"openssl.cafile", "a quoted path", is_string},
  {"openssl.capath", "a quoted path", is_string},
};

const relied_on_key* find_relied_on(const std::string& qualified) {
  for (auto& key : relied_on_keys)
    if (qualified == key.name)
      return &key;
  return nullptr;
}

/// CAF 0.17 binds the last value a file gives a key but keeps the first in
/// `content`, which CAF itself, `validate` and `to_string` read: the program
/// would run with both. Refuse the repetition instead.
caf::error refuse_repeated_keys(const caf::config_option_set& options,
                                const caf::settings& content,
                                const std::string& origin) {
  for (auto& opt : options) {
    auto bound = opt.get();
    if (!bound)
      continue;
    auto first = caf::get_if(&content, opt.full_name());
    if (first != nullptr && *first != *bound)
      return config_error(std::string{opt.full_name().begin(),
                                      opt.full_name().end()}
                          + " is set more than once in " + origin + " ("
                          + caf::to_string(*first) + ", then "
                          + caf::to_string(*bound) + "); keep one");
  }
  return caf::none;
}

bool file_exists(const std::string& path) {
  std::ifstream in{path};
  return in.good();
}

} // namespace

config::config() {
  actor_system_config::load<caf::io::middleman>();
  actor_system_config::load<caf::openssl::manager>();
  add_netchan_types(*this);
  opt_group{custom_options_, "middleman"}.add<caf::timespan>(
    "connection-timeout", "drop a link silent for this long (both sides)");
  opt_group{custom_options_, "netchan"}
    .add(node_name, "name", "name of this node in logs and listings")
    .add(listen, "listen", "host:port to listen on; empty: do not listen")
    .add(insecure, "insecure",
         "INSECURE: run without certificates (loopback only)")
    .add(max_message_size, "max-message-size",
         "largest serialized value accepted, in bytes")
    .add(default_capacity, "default-capacity",
         "capacity of channels created without one (0 = rendezvous)")
    .add(request_timeout, "request-timeout",
         "backstop timeout of every request to another node")
    .add(connect_timeout, "connect-timeout", "how long connecting may take")
    .add(resume_timeout, "resume-timeout",
         "how long operations wait for a broken link to heal")
    .add(reconnect_initial, "reconnect-initial",
         "wait before the first redial of a broken link")
    .add(reconnect_max, "reconnect-max",
         "longest wait between redials (the wait doubles up to this)")
    .add(peers, "peers", "host:port of nodes to dial at start")
    .add(peer_wait, "peer-wait",
         "how long to keep dialling peers at start before failing")
    .add(channels, "channels",
         "channels hosted from the start: \"NAME:TYPE:CAPACITY\" each")
    .add(role, "role", "what this node does (read by netchan-node)");
}

caf::error config::load(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i)
    args.emplace_back(argv[i]);
  return load(std::move(args));
}

caf::error config::load(std::vector<std::string> args) {
  // Take --config-file out of the arguments: we read the file ourselves, so
  // that its raw values can be checked before CAF drops the mistyped ones.
  std::string file;
  bool file_given = false;
  for (auto i = args.begin(); i != args.end();) {
    const std::string flag = "--config-file";
    if (i->compare(0, flag.size() + 1, flag + "=") == 0) {
      file = i->substr(flag.size() + 1);
      file_given = true;
      i = args.erase(i);
    } else if (*i == flag && i + 1 != args.end()) {
      file = *(i + 1);
      file_given = true;
      i = args.erase(i, i + 2);
    } else {
      ++i;
    }
  }
  std::string text;
  if (file_given) {
    std::ifstream in{file};
    if (!in)
      return config_error("config file '" + file
                          + "' (given with --config-file) cannot be opened; "
                            "check the path");
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
    source_ = file;
  } else if (file_exists(default_file)) {
    std::ifstream in{default_file};
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
    source_ = default_file;
  } else {
    text = builtin_defaults();
    source_ = "built-in defaults";
  }
  if (text.find('\r') != std::string::npos)
    return config_error("config file '" + source_
                        + "' has Windows line endings (CRLF), which CAF 0.17 "
                          "cannot read; convert it with dos2unix");
  std::istringstream raw_in{text};
  auto raw = parse_config(raw_in);
  if (!raw)
    return config_error("config file '" + source_
                        + "' does not parse: " + caf::to_string(raw.error())
                        + " (CAF 0.17 reads INI: [sections], ';' comments, "
                          "\"quoted\" strings)");
  if (auto err = validate(*raw, source_))
    return err;
  std::istringstream in{text};
  if (auto err = parse(std::move(args), in))
    return config_error("command line: " + netchan::to_string(err));
  if (!remainder.empty())
    return config_error("unexpected command-line argument '" + remainder.front()
                        + "'");
  if (auto err = refuse_repeated_keys(custom_options_, content, source_))
    return err;
  return validate(content, "the command line");
}

caf::error config::validate(const caf::settings& raw,
                            const std::string& origin) const {
  for (auto& [section, entries] : raw) {
    auto group = caf::get_if<caf::settings>(&entries);
    if (group == nullptr)
      continue; // top-level keys belong to CAF ("config-file", ...)
    for (auto& [key, value] : *group) {
      auto qualified = section + "." + key;
      if (auto rule = find_relied_on(qualified)) {
        if (!rule->accepts(value))
          return config_error(qualified + " = " + caf::to_string(value)
                              + " in " + origin + " is wrong: it must be "
                              + rule->expects);
        continue;
      }
      auto opt = custom_options_.qualified_name_lookup(section, key);
      if (opt == nullptr) {
        if (section == "netchan")
          return config_error("unknown key netchan." + key + " in " + origin
                              + "; caf-application.conf lists every key");
        continue;
      }
      if (auto err = opt->check(value))
        return config_error(qualified + " = " + caf::to_string(value) + " in "
                            + origin + " is wrong: it must be of type "
                            + std::string{opt->type_name().begin(),
                                          opt->type_name().end()});
    }
  }
  return caf::none;
}

} // namespace netchan
