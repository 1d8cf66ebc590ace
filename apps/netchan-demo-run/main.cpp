// netchan-demo-run: the local cluster, one process per node.
//
//   netchan-demo-run [--config-dir DIR] [--certs DIR] [--jobs N] [--chaos]
//                    [--logs DIR] [--node PATH]
//
// Starts netchan-node with DIR/hub.conf (on a free port: the config's
// listen address is overridden with 127.0.0.1:0), then every DIR/worker*.conf
// and DIR/producer.conf, dialling the hub wherever it listens. Shows the
// producer's output, writes every node's output to LOGS/NAME.log, waits for
// the summary line, then stops every process it started, by its id.
// --chaos: once half the jobs are done, the first worker is killed with
// SIGKILL right after it took a job (so it dies holding a lease).
// Exit status 0 only if the summary shows every job completed, nothing lost
// or duplicated, every node ended cleanly, and with --chaos at least one job
// was redelivered.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

volatile std::sig_atomic_t interrupted = 0;

void on_interrupt(int) {
  interrupted = 1;
}

/// A node process: its output (stdout and stderr) arrives on a pipe.
class node_process {
public:
  node_process(std::string name, const std::string& program,
               const std::vector<std::string>& args, const fs::path& log)
    : name_(std::move(name)), log_(log) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(program.c_str()));
    for (auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe: " + std::string{std::strerror(errno)});
    pid_ = ::fork();
    if (pid_ < 0)
      throw std::runtime_error("fork: " + std::string{std::strerror(errno)});
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(out[1], STDERR_FILENO);
      ::execv(program.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    fd_ = out[0];
  }

  ~node_process() {
    stop(std::chrono::seconds{10});
    if (fd_ >= 0)
      ::close(fd_);
  }

  const std::string& name() const {
    return name_;
  }

  pid_t pid() const {
    return pid_;
  }

  int fd() const {
    return fd_;
  }

  /// Reads what is available; returns the raw bytes (empty at EOF, and then
  /// the pipe is closed). Complete lines also go to `lines()`.
  std::string read_some() {
    char buf[8192];
    auto n = ::read(fd_, buf, sizeof(buf));
    if (n <= 0) {
      ::close(fd_);
      fd_ = -1;
      return {};
    }
    std::string bytes(buf, static_cast<size_t>(n));
    log_.write(buf, n);
    log_.flush();
    partial_ += bytes;
    size_t start = 0;
    for (size_t i = 0; i < partial_.size(); ++i)
      if (partial_[i] == '\n' || partial_[i] == '\r') {
        if (i > start)
          lines_.push_back(partial_.substr(start, i - start));
        start = i + 1;
      }
    partial_.erase(0, start);
    return bytes;
  }

  /// Complete lines read so far and not yet taken.
  std::vector<std::string> take_lines() {
    return std::exchange(lines_, {});
  }

  /// The exit status (128 + signal if a signal ended it), if it ended.
  std::optional<int> poll_exit() {
    if (!status_) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_)
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    return status_;
  }

  /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
  int stop(std::chrono::milliseconds grace) {
    if (poll_exit())
      return *status_;
    ::kill(pid_, SIGTERM);
    auto deadline = clock_type::now() + grace;
    while (!poll_exit() && clock_type::now() < deadline) {
      if (fd_ >= 0) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) > 0)
          read_some();
      } else {
        ::usleep(20000); // polling for the exit of a process without output
      }
    }
    if (!poll_exit()) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      status_ = 128 + SIGKILL;
    }
    return *status_;
  }

  void kill_now() {
    ::kill(pid_, SIGKILL);
  }

private:
  std::string name_;
  std::ofstream log_;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string partial_;
  std::vector<std::string> lines_;
  std::optional<int> status_;
};

struct options {
  fs::path config_dir = "config/cluster";
  fs::path certs;
  fs::path logs;
  std::string node = NETCHAN_NODE_PATH;
  std::string jobs;
  bool chaos = false;
};

int usage(const std::string& why) {
  std::cerr << "netchan-demo-run: " << why
            << "\nusage: netchan-demo-run [--config-dir DIR] [--certs DIR] "
               "[--jobs N] [--chaos] [--logs DIR] [--node PATH]\n";
  return 2;
}

/// The value of "key=value" in a summary line.
std::optional<long> field(const std::string& summary, const std::string& key) {
  auto at = summary.find(" " + key + "=");
  if (at == std::string::npos)
    return std::nullopt;
  return std::strtol(summary.c_str() + at + key.size() + 2, nullptr, 10);
}

/// A node's name is its config file's stem: hub, worker-1, producer.
std::vector<std::string> node_args(const options& opt, const fs::path& conf) {
  std::vector<std::string> args{"--config-file=" + conf.string()};
  if (!opt.certs.empty()) {
    auto name = conf.stem().string();
    auto certs = fs::absolute(opt.certs);
    args.push_back("--openssl.certificate=" + (certs / (name + ".pem")).string());
    args.push_back("--openssl.key=" + (certs / (name + "-key.pem")).string());
    args.push_back("--openssl.cafile=" + (certs / "ca.pem").string());
  }
  return args;
}

} // namespace

int main(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--config-dir")
        opt.config_dir = value();
      else if (a == "--certs")
        opt.certs = value();
      else if (a == "--logs")
        opt.logs = value();
      else if (a == "--node")
        opt.node = value();
      else if (a == "--jobs")
        opt.jobs = value();
      else if (a == "--chaos")
        opt.chaos = true;
      else
        return usage("unknown argument " + a);
    } catch (const std::invalid_argument& e) {
      return usage(e.what());
    }
  }
  auto hub_conf = opt.config_dir / "hub.conf";
  auto producer_conf = opt.config_dir / "producer.conf";
  std::vector<fs::path> worker_confs;
  if (fs::is_directory(opt.config_dir))
    for (auto& e : fs::directory_iterator(opt.config_dir))
      if (e.path().extension() == ".conf"
          && e.path().filename().string().rfind("worker", 0) == 0)
        worker_confs.push_back(e.path());
  std::sort(worker_confs.begin(), worker_confs.end());
  if (!fs::exists(hub_conf) || !fs::exists(producer_conf)
      || worker_confs.empty())
    return usage(opt.config_dir.string()
                 + " must hold hub.conf, producer.conf and worker*.conf");
  if (opt.logs.empty()) {
    char tmpl[] = "/tmp/netchan-demo-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr)
      return usage("cannot create a log directory");
    opt.logs = tmpl;
  }
  fs::create_directories(opt.logs);
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  std::signal(SIGPIPE, SIG_IGN);

  std::vector<std::unique_ptr<node_process>> nodes;
  auto start = [&](const fs::path& conf, std::vector<std::string> extra) {
    auto args = node_args(opt, conf);
    args.insert(args.end(), extra.begin(), extra.end());
    auto name = conf.stem().string();
    nodes.push_back(std::make_unique<node_process>(
      name, opt.node, args, opt.logs / (name + ".log")));
    return nodes.back().get();
  };
  /// Waits for a node's "ready" line; the rest of it, or nothing.
  auto wait_ready = [&](node_process& p) -> std::optional<std::string> {
    auto deadline = clock_type::now() + std::chrono::seconds{60};
    while (clock_type::now() < deadline && !interrupted && p.fd() >= 0) {
      pollfd pfd{p.fd(), POLLIN, 0};
      if (::poll(&pfd, 1, 100) <= 0)
        continue;
      p.read_some();
      for (auto& line : p.take_lines())
        if (line.rfind("ready ", 0) == 0)
          return line.substr(6);
    }
    return std::nullopt;
  };
  auto failed_to_start = [&](node_process& p) {
    p.stop(std::chrono::seconds{5});
    std::cerr << "netchan-demo-run: node " << p.name()
              << " did not start; its output (" << (opt.logs / (p.name() + ".log")).string()
              << "):\n";
    std::ifstream log{opt.logs / (p.name() + ".log")};
    std::cerr << log.rdbuf() << std::endl;
    return 1;
  };

  std::cout << "netchan-demo-run: hub, " << worker_confs.size()
            << " workers and a producer from " << opt.config_dir.string()
            << (opt.chaos ? ", with chaos" : "") << "; logs in "
            << opt.logs.string() << std::endl;
  auto hub = start(hub_conf, {"--netchan.listen=127.0.0.1:0"});
  auto hub_ready = wait_ready(*hub);
  if (!hub_ready)
    return failed_to_start(*hub);
  auto address = hub_ready->substr(8, hub_ready->find(' ') - 8); // address=
  auto peers = "--netchan.peers=[\"" + address + "\"]";
  std::vector<node_process*> workers;
  for (auto& conf : worker_confs) {
    workers.push_back(start(conf, {peers}));
    if (!wait_ready(*workers.back()))
      return failed_to_start(*workers.back());
  }
  std::vector<std::string> producer_args{peers};
  producer_args.push_back(std::string{"--demo.progress="}
                          + (::isatty(STDOUT_FILENO) ? "tty" : "lines"));
  if (!opt.jobs.empty())
    producer_args.push_back("--demo.jobs=" + opt.jobs);
  auto producer = start(producer_conf, producer_args);

  // Show the producer, watch the workers, until the producer ends.
  std::optional<std::string> summary;
  long total_jobs = -1;
  long done = 0;
  node_process* victim = opt.chaos ? workers.front() : nullptr;
  bool victim_killed = false;
  std::string victim_last; // the victim's last line
  auto take_lines = [&](node_process& p) {
    for (auto& line : p.take_lines()) {
      if (&p == producer && line.rfind("summary ", 0) == 0)
        summary = line;
      if (&p == producer && line.rfind("producer ", 0) == 0)
        total_jobs = std::strtol(line.c_str() + line.find(": ") + 2, nullptr,
                                 10);
      if (line.rfind("done job ", 0) == 0)
        ++done;
      if (&p == victim)
        victim_last = line;
    }
  };
  // Chaos strikes while the victim holds a job: it is stopped first, and
  // killed only if it had not finished that job by then (else it goes on).
  auto strike = [&] {
    ::kill(victim->pid(), SIGSTOP);
    int st = 0;
    ::waitpid(victim->pid(), &st, WUNTRACED);
    if (!WIFSTOPPED(st))
      return; // it ended meanwhile
    pollfd pfd{victim->fd(), POLLIN, 0};
    while (victim->fd() >= 0 && ::poll(&pfd, 1, 0) > 0) {
      victim->read_some();
      take_lines(*victim);
    }
    if (victim_last.rfind("took job ", 0) != 0) {
      ::kill(victim->pid(), SIGCONT);
      return;
    }
    victim->kill_now();
    victim_killed = true;
    std::cout << "\nchaos: killed " << victim->name() << " (pid "
              << victim->pid() << ") with SIGKILL while it held "
              << victim_last.substr(5) << std::endl;
  };
  while (!interrupted && producer->fd() >= 0) {
    std::vector<pollfd> fds;
    std::vector<node_process*> owners;
    for (auto& n : nodes)
      if (n->fd() >= 0) {
        fds.push_back(pollfd{n->fd(), POLLIN, 0});
        owners.push_back(n.get());
      }
    if (::poll(fds.data(), fds.size(), 500) <= 0)
      continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP)) == 0)
        continue;
      auto& p = *owners[i];
      auto bytes = p.read_some();
      if (&p == producer && !bytes.empty()) {
        // Its "ready" line is for us, not for the user.
        if (bytes.rfind("ready ", 0) == 0 && bytes.find('\n') != std::string::npos)
          bytes.erase(0, bytes.find('\n') + 1);
        std::cout << bytes << std::flush;
      }
      take_lines(p);
      if (&p == victim && !victim_killed && total_jobs > 0
          && 2 * done >= total_jobs && victim_last.rfind("took job ", 0) == 0)
        strike();
    }
  }
  if (interrupted)
    std::cerr << "\nnetchan-demo-run: interrupted; stopping every node\n";

  // Stop everything we started, by its id: the producer has ended (or is
  // stopped now), workers end when jobs closes, the hub on SIGTERM.
  bool nodes_ok = true;
  auto producer_status = producer->stop(std::chrono::seconds{10});
  for (auto* w : workers) {
    auto status = w->stop(std::chrono::seconds{10});
    auto expected = w == victim && victim_killed ? 128 + SIGKILL : 0;
    if (status != expected) {
      nodes_ok = false;
      std::cerr << "netchan-demo-run: " << w->name() << " ended with status "
                << status << " (see its log)\n";
    }
  }
  auto hub_status = hub->stop(std::chrono::seconds{10});
  if (hub_status != 0) {
    nodes_ok = false;
    std::cerr << "netchan-demo-run: hub ended with status " << hub_status
              << "\n";
  }
  std::cout << "netchan-demo-run: stopped " << nodes.size()
            << " processes (hub, " << workers.size()
            << " workers, producer); logs in " << opt.logs.string() << std::endl;
  nodes.clear();
  if (!summary) {
    std::cerr << "netchan-demo-run: the producer printed no summary (status "
              << producer_status << ")\n";
    return 1;
  }
  auto produced = field(*summary, "produced");
  auto completed = field(*summary, "completed");
  auto sound = produced && completed && *produced == *completed
               && field(*summary, "lost") == 0L
               && field(*summary, "duplicated") == 0L && producer_status == 0;
  if (!sound)
    std::cerr << "netchan-demo-run: the books do not balance: " << *summary
              << "\n";
  if (opt.chaos && (!victim_killed || field(*summary, "redelivered") < 1L)) {
    std::cerr << "netchan-demo-run: chaos "
              << (victim_killed ? "killed a worker but no job was redelivered"
                                : "never killed a worker")
              << "\n";
    sound = false;
  }
  return sound && nodes_ok && !interrupted ? 0 : 1;
}
