// netchan-node: one binary, many nodes; each node's configuration file says
// what it is.
//
//   netchan-node --config-file=FILE [--netchan.KEY=VALUE ...] [--demo.KEY=...]
//
// [netchan] gives the node's name, where it listens, the peers it dials
// (retrying for netchan.peer-wait), the channels it hosts and its role:
//   hub       hosts the channels of netchan.channels and serves until
//             SIGTERM or SIGINT
//   worker    takes jobs from PEER/jobs as leases, solves each, sends the
//             result to PEER/results, then commits the lease; exits when
//             jobs is closed
//   producer  submits demo.jobs jobs to PEER/jobs, verifies and collects
//             the results from PEER/results, closes jobs, prints the
//             accounting and the summary line; exit status 0 only if every
//             job has exactly one accepted, verified result
// PEER is the first entry of netchan.peers. Every node prints
// "ready address=HOST:PORT role=ROLE name=NAME" once it is up.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <unistd.h>

#include <caf/actor_system.hpp>

#include "demo.hpp"
#include "netchan/netchan.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct node_config : netchan::config {
  /// Jobs the producer submits.
  size_t jobs = 240;
  /// Zero bits a solution needs (each bit doubles the work).
  size_t difficulty = 16;
  /// How long the producer waits for all results.
  caf::timespan deadline = std::chrono::seconds{120};
  /// Progress display: "auto" (one updating line on a terminal, plain
  /// lines otherwise), "tty" or "lines".
  std::string progress = "auto";

  node_config() {
    add_message_type<demo::job>("demo::job");
    add_message_type<demo::result>("demo::result");
    opt_group{custom_options_, "demo"}
      .add(jobs, "jobs", "jobs the producer submits")
      .add(difficulty, "difficulty",
           "zero bits a solution needs (work doubles per bit)")
      .add(deadline, "deadline", "how long the producer waits for results")
      .add(progress, "progress", "\"auto\", \"tty\" or \"lines\"");
  }
};

int fail(const std::string& what) {
  std::cerr << "netchan-node: " << what << std::endl;
  return 1;
}

/// The hub's channel `name`, at the first peer.
std::string hub_channel(const node_config& cfg, const std::string& name) {
  return cfg.peers.front() + "/" + name;
}

/// The hub's two channels, as this role uses them.
struct hub_channels {
  netchan::sender<demo::job> jobs_tx;
  netchan::receiver<demo::job> jobs_rx;
  netchan::sender<demo::result> results_tx;
  netchan::receiver<demo::result> results_rx;
};

caf::expected<hub_channels> open_hub(const node_config& cfg, netchan::node& n) {
  auto jobs = n.open<demo::job>(hub_channel(cfg, "jobs"));
  if (!jobs)
    return std::move(jobs.error());
  auto results = n.open<demo::result>(hub_channel(cfg, "results"));
  if (!results)
    return std::move(results.error());
  return hub_channels{jobs->first, jobs->second, results->first,
                      results->second};
}

/// Blocks until SIGTERM, SIGINT or SIGUSR1 (sent by a role that finished).
/// The signals are blocked in every thread (see main), so only this waits.
int wait_for_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

// -- worker --------------------------------------------------------------------

int run_worker(const node_config& cfg, netchan::node& n) {
  auto hub = open_hub(cfg, n);
  if (!hub)
    return fail(netchan::to_string(hub.error()));
  auto rx = hub->jobs_rx;
  auto tx = hub->results_tx;
  size_t done = 0;
  for (;;) {
    auto lease = rx.receive_lease();
    if (!lease) {
      if (netchan::is(lease.error(), netchan::errc::closed)) {
        std::cout << "worker " << cfg.node_name << ": jobs closed after "
                  << done << " jobs" << std::endl;
        return 0;
      }
      return fail("receiving a job: " + netchan::to_string(lease.error()));
    }
    auto& j = lease->value();
    std::cout << "took job " << j.id
              << (lease->redelivered() ? " (redelivered)" : "") << std::endl;
    demo::result r{j.id, demo::solve(j), cfg.node_name, lease->redelivered()};
    // The result first, then the commit: a worker that dies in between has
    // its job redelivered, and the producer recognises the second result.
    if (auto err = tx.send(r))
      return fail("sending the result of job " + std::to_string(j.id) + ": "
                  + netchan::to_string(err));
    if (auto err = lease->commit())
      return fail("committing job " + std::to_string(j.id) + ": "
                  + netchan::to_string(err));
    std::cout << "done job " << j.id << std::endl;
    ++done;
  }
}

// -- producer ------------------------------------------------------------------

/// What the producer counted.
struct books {
  size_t produced = 0;
  /// job id -> the worker whose verified result was accepted.
  std::map<uint64_t, std::string> accepted;
  std::map<std::string, size_t> per_worker;
  /// Verified results per job (more than one: a job solved twice).
  std::map<uint64_t, size_t> results;
  /// Jobs some worker got as a redelivered lease.
  std::set<uint64_t> redelivered;
  /// Second results for a redelivered job: recognised, not accepted.
  size_t recognised = 0;
  /// Second results for a job never redelivered: a value delivered twice.
  size_t duplicated = 0;

  /// Sorts second results once all are in: the job of one must have been
  /// redelivered (to some worker), or netchan delivered it twice.
  void settle() {
    recognised = duplicated = 0;
    for (auto& [job, n] : results)
      (redelivered.count(job) != 0 ? recognised : duplicated) += n - 1;
  }
  /// Results that do not solve their job, or name no job of ours.
  size_t invalid = 0;
};

class progress_line {
public:
  progress_line(bool tty, size_t total) : tty_(tty), total_(total) {
  }

  void show(const books& b, clock_type::time_point start, bool final) {
    auto now = clock_type::now();
    if (!final && now < next_)
      return;
    next_ = now + (tty_ ? std::chrono::milliseconds{200}
                        : std::chrono::milliseconds{1000});
    auto secs = std::chrono::duration<double>(now - start).count();
    auto done = b.accepted.size();
    std::ostringstream line;
    line << std::fixed << std::setprecision(1);
    if (tty_) {
      line << "\r" << done << "/" << total_ << " jobs  "
           << (total_ ? 100.0 * done / total_ : 0) << "%  "
           << (secs > 0 ? done / secs : 0) << " jobs/s ";
      for (auto& [w, k] : b.per_worker)
        line << " " << w << " " << k;
      line << "\x1b[K" << (final ? "\n" : "");
    } else {
      line << "progress done=" << done << "/" << total_
           << " rate=" << (secs > 0 ? done / secs : 0) << "/s";
      for (auto& [w, k] : b.per_worker)
        line << " " << w << "=" << k;
      line << "\n";
    }
    std::cout << line.str() << std::flush;
  }

private:
  bool tty_;
  size_t total_;
  clock_type::time_point next_{};
};

void take_result(const std::vector<demo::job>& all, const demo::result& r,
                 books& b) {
  if (r.job == 0 || r.job > all.size() || !demo::solves(all[r.job - 1], r.nonce)) {
    ++b.invalid;
    return;
  }
  if (r.redelivered)
    b.redelivered.insert(r.job);
  ++b.results[r.job];
  // The first verified result of a job is accepted; a second one is not
  // (settle() tells whether it was legitimate).
  if (b.accepted.emplace(r.job, r.worker).second)
    ++b.per_worker[r.worker];
}

void print_accounting(const books& b, double seconds) {
  auto completed = b.accepted.size();
  std::cout << "\n  worker        jobs   share\n";
  for (auto& [w, k] : b.per_worker)
    std::cout << "  " << std::left << std::setw(12) << w << std::right
              << std::setw(6) << k << std::setw(7) << std::fixed
              << std::setprecision(1) << (completed ? 100.0 * k / completed : 0)
              << "%\n";
  std::cout << "\n  produced     " << b.produced
            << "\n  completed    " << completed
            << "  (distinct jobs with a verified result)"
            << "\n  lost         " << b.produced - std::min(b.produced, completed)
            << "\n  redelivered  " << b.redelivered.size()
            << "  (jobs handed to a second worker: the first died holding "
               "them)"
            << "\n  recognised   " << b.recognised
            << "  (second results of redelivered jobs, not accepted again)"
            << "\n  duplicated   " << b.duplicated
            << "  (second results of jobs never redelivered)"
            << "\n  invalid      " << b.invalid << "\n\n";
  std::cout << "summary produced=" << b.produced << " completed=" << completed
            << " lost=" << b.produced - std::min(b.produced, completed)
            << " duplicated=" << b.duplicated
            << " redelivered=" << b.redelivered.size()
            << " workers=" << b.per_worker.size() << " seconds=" << std::fixed
            << std::setprecision(1) << seconds << std::endl;
}

int run_producer(const node_config& cfg, netchan::node& n) {
  auto hub = open_hub(cfg, n);
  if (!hub)
    return fail(netchan::to_string(hub.error()));
  std::mt19937_64 rng{std::random_device{}()};
  std::vector<demo::job> all;
  for (uint64_t id = 1; id <= cfg.jobs; ++id)
    all.push_back(demo::job{id, rng(), static_cast<uint32_t>(cfg.difficulty)});
  auto tty = cfg.progress == "tty"
             || (cfg.progress == "auto" && ::isatty(STDOUT_FILENO) == 1);
  std::cout << "producer " << cfg.node_name << ": " << all.size()
            << " jobs of difficulty " << cfg.difficulty << " to "
            << hub_channel(cfg, "jobs") << std::endl;
  auto start = clock_type::now();
  std::atomic<size_t> submitted{0};
  std::string submit_error;
  // Capacity 0: each send completes when a worker has taken the job.
  std::thread submitter{[&, tx = hub->jobs_tx] {
    for (auto& j : all) {
      if (auto err = tx.send(j)) {
        submit_error = netchan::to_string(err);
        return;
      }
      ++submitted;
    }
  }};
  books b;
  progress_line progress{tty, all.size()};
  std::string receive_error;
  auto deadline = start + cfg.deadline;
  while (b.accepted.size() < all.size() && clock_type::now() < deadline) {
    auto r = hub->results_rx.receive_for(std::chrono::milliseconds{200});
    if (r)
      take_result(all, *r, b);
    else if (!netchan::is(r.error(), netchan::errc::timeout)) {
      receive_error = netchan::to_string(r.error());
      break;
    }
    progress.show(b, start, false);
  }
  progress.show(b, start, true);
  // Done (or out of time): workers stop when jobs is closed; a send still
  // waiting fails with closed and is not counted as produced.
  if (auto err = hub->jobs_tx.close())
    std::cerr << "closing jobs: " << netchan::to_string(err) << '\n';
  submitter.join();
  b.produced = submitted.load();
  // Results still on their way (a redelivered job's second one) count too.
  while (auto r = hub->results_rx.receive_for(std::chrono::milliseconds{300}))
    take_result(all, *r, b);
  b.settle();
  if (!submit_error.empty())
    std::cerr << "submitting: " << submit_error << '\n';
  if (!receive_error.empty())
    std::cerr << "receiving results: " << receive_error << '\n';
  auto seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  print_accounting(b, seconds);
  auto ok = b.accepted.size() == all.size() && b.produced == all.size()
            && b.duplicated == 0 && b.invalid == 0;
  return ok ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  node_config cfg;
  if (auto err = cfg.load(argc, argv))
    return fail(netchan::to_string(err));
  const auto& role = cfg.role;
  if (role != "" && role != "hub" && role != "worker" && role != "producer")
    return fail("netchan.role = \"" + role
                + "\" is unknown: use \"hub\", \"worker\", \"producer\" or \"\"");
  if ((role == "worker" || role == "producer") && cfg.peers.empty())
    return fail("a " + role
                + " needs the hub's host:port in netchan.peers (its first "
                  "entry)");
  if (cfg.progress != "auto" && cfg.progress != "tty" && cfg.progress != "lines")
    return fail("demo.progress = \"" + cfg.progress
                + "\": use \"auto\", \"tty\" or \"lines\"");
  // Hubs and workers stop on SIGTERM / SIGINT, cleanly: block them in every
  // thread (the actor system's threads inherit this mask) and wait for them.
  bool waits_for_signals = role != "producer";
  if (waits_for_signals) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  caf::actor_system sys{cfg};
  auto started = netchan::node::start(sys);
  if (!started)
    return fail("node '" + cfg.node_name
                + "' cannot start: " + netchan::to_string(started.error()));
  auto n = *started;
  std::cout << "ready address=" << (n.port() != 0 ? n.address() : "-")
            << " role=" << (role.empty() ? "none" : role)
            << " name=" << cfg.node_name << std::endl;
  int rc = 0;
  if (role == "producer") {
    rc = run_producer(cfg, n);
  } else if (role == "worker") {
    std::atomic<int> worker_rc{0};
    std::thread worker{[&] {
      worker_rc = run_worker(cfg, n);
      ::kill(::getpid(), SIGUSR1);
    }};
    if (wait_for_signal() != SIGUSR1)
      n.shutdown(); // stops the worker's blocking calls
    worker.join();
    rc = worker_rc;
  } else {
    std::string hosted;
    for (auto& name : n.channels())
      hosted += (hosted.empty() ? "" : ", ") + name;
    std::cout << "node '" << cfg.node_name << "' hosts: "
              << (hosted.empty() ? "(no channels)" : hosted) << std::endl;
    wait_for_signal();
    std::cout << "node '" << cfg.node_name << "': stopping" << std::endl;
  }
  n.shutdown();
  return rc;
}
