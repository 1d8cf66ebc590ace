#include "driver.hpp"

#include <atomic>
#include <iostream>
#include <sstream>
#include <thread>

#include <caf/event_based_actor.hpp>
#include <caf/openssl/all.hpp>

using namespace std::chrono_literals;

namespace bench {

namespace {

/// A child's report line after its prefix: "V name V name V ..." (the
/// prefix's own value first, found under "") or, with `pairs_only`,
/// "name V name V ...".
class fields {
public:
  explicit fields(const std::optional<std::string>& line,
                  bool pairs_only = false)
    : ok_(!!line) {
    if (!line)
      return;
    std::istringstream in{*line};
    std::string name;
    std::string value;
    if (!pairs_only && in >> value)
      values_.emplace_back("", value);
    while (in >> name >> value)
      values_.emplace_back(name, value);
  }

  bool ok() const {
    return ok_;
  }

  double num(const std::string& name) const {
    for (auto& [k, v] : values_)
      if (k == name)
        return std::stod(v);
    return 0;
  }

  uint64_t count(const std::string& name) const {
    for (auto& [k, v] : values_)
      if (k == name)
        return std::stoull(v);
    return 0;
  }

private:
  bool ok_;
  std::vector<std::pair<std::string, std::string>> values_;
};

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds{static_cast<int64_t>(seconds * 1000)};
}

std::string plural(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

} // namespace

driver::driver(options opt, std::string self_path)
  : opt_(std::move(opt)), self_path_(std::move(self_path)) {
}

driver::~driver() {
  if (raw_sink_)
    caf::anon_send_exit(raw_sink_, caf::exit_reason::user_shutdown);
  if (node_)
    node_->shutdown();
  node_.reset();
  sys_.reset();
}

caf::error driver::start() {
  pki_.emplace(dir_.path(), "bench-ca");
  mine_ = pki_->issue("driver");
  theirs_ = pki_->issue("child");
  auto args = mine_.args();
  args.push_back("--netchan.listen=127.0.0.1:0");
  for (auto& a : opt_.config_args)
    args.push_back(a);
  if (auto err = cfg_.load(args))
    return err;
  sys_ = std::make_unique<caf::actor_system>(cfg_);
  auto n = netchan::node::start(*sys_);
  if (!n)
    return n.error();
  node_.emplace(std::move(*n));
  return caf::none;
}

bool driver::wanted(const std::string& group) const {
  return opt_.only.empty()
         || std::find(opt_.only.begin(), opt_.only.end(), group)
              != opt_.only.end();
}

void driver::run() {
  if (wanted("baseline")) {
    tls_floor();
    raw_one_way(1);
    raw_one_way(8);
    raw_request_response(1);
    raw_request_response(8);
  }
  if (wanted("echo"))
    echo();
  if (wanted("stream"))
    for (size_t cap : {1, 64, 1024})
      for (size_t senders : {1, 8})
        stream(cap, senders);
  if (wanted("rendezvous"))
    for (bool apart : {false, true})
      for (size_t pairs : {1, 8})
        rendezvous(apart, pairs);
  if (wanted("stalled"))
    stalled_receiver();
  if (wanted("scale"))
    scale(10000);
  compare();
}

std::unique_ptr<test::child> driver::spawn(const std::string& role,
                                           std::vector<std::string> args,
                                           bool listens) {
  args.insert(args.begin(), {"--role", role});
  args.push_back("--seconds");
  args.push_back(std::to_string(opt_.seconds));
  args.push_back("--");
  for (auto& a : theirs_.args())
    args.push_back(a);
  if (listens)
    args.push_back("--netchan.listen=127.0.0.1:0");
  for (auto& a : opt_.config_args)
    args.push_back(a);
  return std::make_unique<test::child>(self_path_, args);
}

void driver::finish(test::child& c, const std::string& who, row& r) {
  auto peak = c.wait_for("peak_kb ", 30s);
  if (c.wait(30s) != 0 && r.note.empty())
    r.note = who + " did not exit cleanly";
  process_memory m;
  m.who = who;
  m.peak_kb = peak ? std::stoull(*peak) : 0;
  r.memory.push_back(m);
}

void driver::finish_self(const std::string& who, row& r) {
  process_memory m;
  m.who = who;
  m.peak_kb = status_kb(0, "VmHWM");
  r.memory.push_back(m);
}

void driver::fail(row& r, const std::string& what, test::child* c) {
  r.note = what;
  std::cerr << "netchan-bench: " << r.scenario << " (" << r.detail
            << "): " << what << '\n';
  if (c)
    std::cerr << c->transcript() << '\n';
}

// -- baselines ------------------------------------------------------------------

void driver::tls_floor() {
  row r;
  r.id = "tls";
  r.group = "baseline";
  r.scenario = "OpenSSL TLS ping-pong";
  r.detail = "16 B, 2 proc";
  std::cerr << "netchan-bench: " << r.scenario << '\n';
  auto server = spawn("tls-echo", {});
  auto port = server->wait_for("port ", 30s);
  if (!port) {
    fail(r, "the TLS echo server did not start", server.get());
  } else {
    tls_ping(static_cast<uint16_t>(std::stoul(*port)), mine_.args(),
             opt_.seconds, 16, r);
    finish(*server, "echo server", r);
  }
  report_.rows.push_back(std::move(r));
}

void driver::raw_one_way(size_t senders) {
  if (!raw_sink_) {
    // One sink for every raw row: counts one-way values, acknowledges every
    // raw_ack_every-th of each sender, answers pings.
    raw_received_ = std::make_shared<std::atomic<uint64_t>>(0);
    raw_sink_ = sys_->spawn(
      [count = raw_received_](caf::event_based_actor* self) -> caf::behavior {
        return {
          [=](raw_data_atom, uint64_t seq) {
            count->fetch_add(1, std::memory_order_relaxed);
            if (seq % raw_ack_every == 0)
              self->send(caf::actor_cast<caf::actor>(self->current_sender()),
                         raw_ack_atom::value, seq);
          },
          [](raw_ping_atom, uint64_t n) {
            return caf::make_message(raw_ping_atom::value, n);
          },
        };
      });
    auto port = caf::openssl::publish(raw_sink_, 0, "127.0.0.1", true);
    if (!port) {
      std::cerr << "netchan-bench: cannot publish the raw CAF sink: "
                << caf::to_string(port.error()) << '\n';
      return;
    }
    raw_address_ = "127.0.0.1:" + std::to_string(*port);
  }
  row r;
  r.id = "raw-1way-" + std::to_string(senders);
  r.group = "baseline";
  r.scenario = "raw CAF one-way";
  r.detail = plural(senders, "sender", "senders") + ", 1 value/msg";
  std::cerr << "netchan-bench: " << r.scenario << ", " << r.detail << '\n';
  reset_peak();
  auto& received = *raw_received_;
  received = 0;
  auto c = spawn("raw-source",
                 {"--to", raw_address_, "--threads", std::to_string(senders)});
  auto deadline = clock_type::now() + 30s;
  while (received.load() == 0 && clock_type::now() < deadline)
    std::this_thread::sleep_for(1ms);
  auto r0 = received.load();
  auto t0 = clock_type::now();
  std::this_thread::sleep_until(t0 + ms(opt_.seconds));
  auto r1 = received.load();
  auto elapsed = seconds_since(t0);
  c->close_stdin();
  auto sent = c->wait_for("sent ", 30s);
  if (!sent) {
    fail(r, "the source did not report", c.get());
  } else {
    r.sent = std::stoull(*sent);
    deadline = clock_type::now() + 30s;
    while (received.load() < r.sent && clock_type::now() < deadline)
      std::this_thread::sleep_for(1ms);
  }
  r.received = received.load();
  r.per_second = (r1 - r0) / elapsed;
  finish(*c, "source", r);
  finish_self("sink (driver)", r);
  report_.rows.push_back(std::move(r));
}

void driver::raw_request_response(size_t requesters) {
  row r;
  r.id = "raw-rr-" + std::to_string(requesters);
  r.group = "baseline";
  r.scenario = "raw CAF request/response";
  r.detail = plural(requesters, "requester", "requesters") + ", blocking";
  r.baseline = "tls";
  std::cerr << "netchan-bench: " << r.scenario << ", " << r.detail << '\n';
  if (raw_address_.empty())
    return fail(r, "no raw CAF sink");
  reset_peak();
  auto c = spawn("raw-pinger", {"--to", raw_address_, "--threads",
                                std::to_string(requesters)});
  fields f{c->wait_for("pings ", 30s + ms(opt_.seconds))};
  if (!f.ok()) {
    fail(r, "the pinger did not report", c.get());
  } else {
    r.sent = f.count("") + f.count("failed");
    r.received = f.count("");
    r.returned = f.count("failed");
    r.per_second = r.received / f.num("elapsed");
    r.median_us = f.num("median");
    r.p99_us = f.num("p99");
    r.max_us = f.num("max");
  }
  finish(*c, "requester", r);
  finish_self("responder (driver)", r);
  report_.rows.push_back(std::move(r));
}

// -- netchan ------------------------------------------------------------------

void driver::echo() {
  row r;
  r.id = "echo";
  r.group = "echo";
  r.scenario = "echo (Go library's shape)";
  r.detail = "listener + " + std::to_string(opt_.clients) + " clients, cap "
             + std::to_string(netchan::default_listen_capacity) + "/"
             + std::to_string(netchan::default_dial_capacity)
             + ", round trips";
  r.baseline = "raw-1way-1";
  std::cerr << "netchan-bench: " << r.scenario << ", " << r.detail << '\n';
  auto listener = spawn("echo-listener",
                        {"--threads", std::to_string(opt_.clients),
                         "--clients", std::to_string(opt_.clients)});
  auto where = listener->wait_for("ready ", 30s);
  if (!where) {
    fail(r, "the listener did not start", listener.get());
    report_.rows.push_back(std::move(r));
    return;
  }
  std::vector<std::unique_ptr<test::child>> clients;
  for (size_t i = 0; i < opt_.clients; ++i)
    clients.push_back(spawn("echo-client", {"--to", *where}));
  for (auto& c : clients)
    if (!c->wait_for("dialed", 30s))
      fail(r, "a client did not dial", c.get());
  fields f{listener->wait_for("echo ", 90s + ms(opt_.seconds)), true};
  if (!f.ok())
    fail(r, "the listener did not report", listener.get());
  uint64_t processed = 0;
  uint64_t client_returned = 0;
  for (size_t i = 0; i < clients.size(); ++i) {
    clients[i]->close_stdin();
    fields done{clients[i]->wait_for("processed ", 30s)};
    if (!done.ok())
      fail(r, "a client did not report", clients[i].get());
    processed += done.count("");
    client_returned += done.count("returned");
  }
  for (size_t i = 0; i < clients.size(); ++i)
    finish(*clients[i], "client " + std::to_string(i + 1), r);
  listener->close_stdin();
  finish(*listener, "listener", r);
  r.sent = f.count("sent");
  r.received = f.count("received");
  r.returned = f.count("returned") + client_returned;
  if (f.num("elapsed") > 0)
    r.per_second = f.count("in_window") / f.num("elapsed");
  auto& go = report_.echo;
  go.present = true;
  go.sent = f.count("ok");
  go.received = r.received;
  go.processed = processed;
  go.not_received = go.sent - std::min(go.sent, go.received);
  go.clients = f.count("clients");
  go.seconds = f.num("elapsed");
  report_.rows.push_back(std::move(r));
}

void driver::stream(size_t capacity, size_t senders) {
  row r;
  r.id = "stream-" + std::to_string(capacity) + "-" + std::to_string(senders);
  r.group = "stream";
  r.scenario = "stream";
  r.detail = "cap " + std::to_string(capacity) + ", "
             + plural(senders, "sender", "senders");
  r.baseline = "raw-1way-" + std::to_string(senders);
  std::cerr << "netchan-bench: " << r.scenario << ", " << r.detail << '\n';
  reset_peak();
  auto name = r.id;
  auto ch = node_->create<uint64_t>(name, capacity);
  if (!ch) {
    fail(r, netchan::to_string(ch.error()));
    report_.rows.push_back(std::move(r));
    return;
  }
  auto c = spawn("stream-sender", {"--to", node_->address() + "/" + name,
                                   "--threads", std::to_string(senders)});
  auto& rx = ch->second;
  uint64_t received = 0;
  if (auto first = rx.receive_for(30s); !first) {
    fail(r, netchan::to_string(first.error()), c.get());
  } else {
    ++received;
    auto t0 = clock_type::now();
    uint64_t in_window = 0;
    while (seconds_since(t0) < opt_.seconds) {
      if (!rx.receive_for(30s))
        break;
      ++in_window;
    }
    r.per_second = in_window / seconds_since(t0);
    received += in_window;
  }
  static_cast<void>(ch->first.close());
  // Values sent on credit before the close still arrive: drain them.
  while (rx.receive_for(30s))
    ++received;
  fields f{c->wait_for("sent ", 30s)};
  if (!f.ok())
    fail(r, "the sender did not report", c.get());
  r.sent = f.count("");
  r.returned = f.count("returned");
  r.received = received;
  finish(*c, "sender", r);
  finish_self("owner+receiver (driver)", r);
  report_.rows.push_back(std::move(r));
}

void driver::rendezvous(bool owner_apart, size_t pairs) {
  row r;
  r.id = std::string{"rv-"} + (owner_apart ? "3p-" : "2p-")
         + std::to_string(pairs);
  r.group = "rendezvous";
  r.scenario = "rendezvous (cap 0)";
  r.detail = std::string{owner_apart ? "owner apart, 3 proc"
                                     : "owner+sender, 2 proc"}
             + ", " + plural(pairs, "pair", "pairs");
  r.baseline = "raw-rr-" + std::to_string(pairs);
  std::cerr << "netchan-bench: " << r.scenario << ", " << r.detail << '\n';
  reset_peak();
  auto name = r.id;
  std::unique_ptr<test::child> owner;
  std::string where;
  std::optional<netchan::sender<uint64_t>> tx;
  if (owner_apart) {
    owner = spawn("owner", {"--to", name, "--threads", "0"}, true);
    if (auto w = owner->wait_for("ready ", 30s)) {
      where = *w;
      auto ch = node_->open<uint64_t>(where);
      if (ch)
        tx = ch->first;
      else
        fail(r, netchan::to_string(ch.error()));
    } else {
      fail(r, "the owner did not start", owner.get());
    }
  } else {
    where = node_->address() + "/" + name;
    auto ch = node_->create<uint64_t>(name, 0);
    if (ch)
      tx = ch->first;
    else
      fail(r, netchan::to_string(ch.error()));
  }
  std::unique_ptr<test::child> rx;
  if (tx) {
    rx = spawn("receiver",
               {"--to", where, "--threads", std::to_string(pairs)});
    // The first transfer waits for the receiver to connect: not measured.
    ++r.sent;
    if (auto err = tx->send_for(0, 30s)) {
      ++r.returned;
      fail(r, netchan::to_string(err), rx.get());
    } else {
      std::vector<std::vector<double>> lat(pairs);
      std::atomic<uint64_t> attempts{0};
      std::atomic<uint64_t> returned{0};
      std::vector<std::thread> ts;
      auto t0 = clock_type::now();
      for (size_t p = 0; p < pairs; ++p)
        ts.emplace_back([&, p] {
          uint64_t n = 0;
          while (seconds_since(t0) < opt_.seconds) {
            auto start = clock_type::now();
            attempts.fetch_add(1, std::memory_order_relaxed);
            if (tx->send(++n)) {
              returned.fetch_add(1);
              return;
            }
            lat[p].push_back(micros_since(start));
          }
        });
      for (auto& t : ts)
        t.join();
      auto elapsed = seconds_since(t0);
      auto all = merged(lat);
      r.sent += attempts.load();
      r.returned += returned.load();
      r.per_second = all.size() / elapsed;
      r.median_us = percentile(all, 0.5);
      r.p99_us = percentile(all, 0.99);
      r.max_us = percentile(all, 1.0);
    }
    static_cast<void>(tx->close());
    fields f{rx->wait_for("received ", 30s)};
    if (!f.ok())
      fail(r, "the receiver did not report", rx.get());
    r.received = f.count("");
    tx.reset();
    finish(*rx, "receiver", r);
  }
  if (owner) {
    owner->close_stdin();
    finish(*owner, "owner", r);
    finish_self("sender (driver)", r);
  } else {
    finish_self("owner+sender (driver)", r);
  }
  report_.rows.push_back(std::move(r));
}

void driver::stalled_receiver() {
  constexpr size_t senders = 8;
  row r;
  r.id = "stall";
  r.group = "stalled";
  r.scenario = "stalled receiver";
  r.detail = "cap 1024, 8 senders, 3 proc";
  std::cerr << "netchan-bench: " << r.scenario << ", " << r.detail << '\n';
  // Owner, sender and receiver are fresh processes: their memory is this
  // scenario's alone. This process only closes the channel at the end.
  auto owner = spawn("owner", {"--to", "stall", "--threads", "1024"}, true);
  auto where = owner->wait_for("ready ", 30s);
  std::optional<std::pair<netchan::sender<uint64_t>,
                          netchan::receiver<uint64_t>>> ch;
  if (where) {
    auto opened = node_->open<uint64_t>(*where);
    if (opened)
      ch = std::move(*opened);
    else
      fail(r, netchan::to_string(opened.error()));
  } else {
    fail(r, "the owner did not start", owner.get());
  }
  if (!ch) {
    owner->close_stdin();
    finish(*owner, "owner", r);
    report_.rows.push_back(std::move(r));
    return;
  }
  auto rx = spawn("receiver", {"--to", *where, "--threads", "1"});
  auto tx = spawn("stream-sender", {"--to", *where, "--threads",
                                    std::to_string(senders)});
  if (!rx->wait_for("open", 30s) || !tx->wait_for("open", 30s))
    fail(r, "a child did not open the channel", rx.get());
  // Flowing for a moment, then the receiver stops taking values: the
  // senders fill the channel and block; nobody's memory may grow.
  std::this_thread::sleep_for(500ms);
  rx->write_line("stall");
  std::this_thread::sleep_for(500ms);
  std::vector<test::child*> procs{owner.get(), tx.get(), rx.get()};
  std::vector<uint64_t> start_kb;
  for (auto p : procs)
    start_kb.push_back(status_kb(p->pid(), "VmRSS"));
  auto t0 = clock_type::now();
  std::this_thread::sleep_until(t0 + ms(opt_.seconds));
  std::vector<uint64_t> end_kb;
  for (auto p : procs)
    end_kb.push_back(status_kb(p->pid(), "VmRSS"));
  r.detail += ", stalled " + std::to_string(static_cast<int>(
                               seconds_since(t0) + 0.5))
              + " s";
  rx->close_stdin(); // resumes: it drains what the senders put in
  static_cast<void>(ch->first.close());
  fields sent{tx->wait_for("sent ", 30s)};
  fields got{rx->wait_for("received ", 30s)};
  if (!sent.ok() || !got.ok())
    fail(r, "a child did not report", sent.ok() ? rx.get() : tx.get());
  r.sent = sent.count("");
  r.returned = sent.count("returned");
  r.received = got.count("");
  ch.reset();
  finish(*tx, "sender", r);
  finish(*rx, "receiver", r);
  owner->close_stdin();
  finish(*owner, "owner", r);
  // finish() recorded sender, receiver, owner: match the samples.
  std::vector<size_t> order{1, 2, 0};
  for (size_t i = 0; i < r.memory.size() && i < order.size(); ++i) {
    r.memory[i].start_kb = start_kb[order[i]];
    r.memory[i].end_kb = end_kb[order[i]];
  }
  report_.rows.push_back(std::move(r));
}

// -- scale --------------------------------------------------------------------

/// What idle channels cost: a child hosts `channels` channels (capacity 1,
/// both handles kept), another opens every one of them from its own node;
/// each reports its resident memory before and after, so start-up, the
/// connection and its TLS session are not counted.
void driver::scale(size_t channels) {
  auto n = std::to_string(channels);
  auto scale_row = [&n](const char* id, const char* scenario) {
    row r;
    r.id = id;
    r.group = "scale";
    r.scenario = scenario;
    r.detail = n + " x cap 1, both handles";
    r.accounted = false; // no values travel
    return r;
  };
  auto hosted = scale_row("scale-host", "hosted channels");
  auto opened = scale_row("scale-open", "opened remote channels");
  std::cerr << "netchan-bench: scale, " << n << " channels\n";
  auto per_channel = [channels](const fields& f) {
    auto before = f.count("kb_before");
    auto after = f.count("kb_after");
    return after > before ? double(after - before) / channels : 0.0;
  };
  auto host = spawn("scale-host", {"--to", "scale", "--count", n}, true);
  fields h{host->wait_for("hosted ", 300s)};
  auto where = host->wait_for("ready ", 30s);
  if (!h.ok() || !where) {
    fail(hosted, "the host did not report", host.get());
    opened.note = "no host";
  } else {
    hosted.kib_each = per_channel(h);
    auto opener = spawn("scale-open", {"--to", *where, "--count", n});
    fields o{opener->wait_for("opened ", 300s)};
    if (!o.ok())
      fail(opened, "the opener did not report", opener.get());
    else
      opened.kib_each = per_channel(o);
    finish(*opener, "opener", opened);
  }
  host->close_stdin();
  finish(*host, "host", hosted);
  report_.rows.push_back(std::move(hosted));
  report_.rows.push_back(std::move(opened));
}

// -- ratios and targets -------------------------------------------------------

void driver::compare() {
  auto find = [this](const std::string& id) -> const row* {
    for (auto& r : report_.rows)
      if (r.id == id)
        return &r;
    return nullptr;
  };
  for (auto& r : report_.rows) {
    auto b = find(r.baseline);
    if (!b)
      continue;
    if (r.per_second > 0 && b->per_second > 0)
      r.ratio = r.per_second / b->per_second;
    if (r.median_us > 0 && b->median_us > 0)
      r.latency_ratio = r.median_us / b->median_us;
  }
  auto add = [&](const std::string& id, std::string what, double limit,
                 bool at_least, bool latency) {
    target t;
    t.what = std::move(what);
    t.limit = limit;
    t.at_least = at_least;
    if (auto r = find(id))
      t.value = latency ? r->latency_ratio : r->ratio;
    t.met = t.value >= 0 && (at_least ? t.value >= limit : t.value <= limit);
    report_.targets.push_back(std::move(t));
  };
  for (auto senders : {"1", "8"}) {
    auto who = std::string{senders} + (senders[0] == '1' ? " sender" : " senders");
    add(std::string{"stream-1024-"} + senders,
        "stream cap 1024, " + who + ": values/s vs raw CAF one-way", 5, true,
        false);
    add(std::string{"stream-64-"} + senders,
        "stream cap 64, " + who + ": values/s vs raw CAF one-way", 1.5, true,
        false);
  }
  add("echo",
      "echo, " + std::to_string(opt_.clients)
        + " clients: round trips/s vs raw CAF one-way",
      1, true, false);
  add("rv-2p-1", "rendezvous, owner beside sender: median vs raw CAF "
                 "request/response",
      1.5, false, true);
  add("rv-3p-1", "rendezvous, owner on a third process: median vs raw CAF "
                 "request/response",
      2.5, false, true);
  if (auto r = find("stall")) {
    target t;
    t.what = "stalled receiver: largest process, MiB resident";
    t.limit = 64;
    t.at_least = false;
    uint64_t kb = 0;
    for (auto& m : r->memory)
      kb = std::max({kb, m.peak_kb, m.end_kb});
    t.value = kb / 1024.0;
    t.met = kb > 0 && t.value <= t.limit;
    report_.targets.push_back(std::move(t));
  }
}

} // namespace bench
