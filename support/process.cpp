#include "process.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fstream>
#include <poll.h>
#include <stdexcept>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test {

child::child(const std::string& program, const std::vector<std::string>& args,
             const std::vector<std::string>& env, bool with_stderr) {
  // Everything the child needs is built before fork: between fork and exec
  // a multi-threaded parent's child may not allocate.
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto e = environ; *e != nullptr; ++e)
    envp.push_back(*e);
  for (auto& e : env)
    envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int out_pipe[2];
  int in_pipe[2];
  // O_CLOEXEC: a later child must not inherit this one's pipes (it would
  // hold this child's stdin open forever); dup2 clears it for the child.
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(in_pipe, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ < 0)
    throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(out_pipe[1], STDOUT_FILENO);
    if (with_stderr)
      ::dup2(out_pipe[1], STDERR_FILENO);
    ::dup2(in_pipe[0], STDIN_FILENO);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    ::close(in_pipe[0]);
    ::close(in_pipe[1]);
    ::execve(program.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(in_pipe[0]);
  out_ = out_pipe[0];
  in_ = in_pipe[1];
}

child::~child() {
  if (!exited_) {
    kill();
    wait(std::chrono::seconds{10});
  }
  if (out_ >= 0)
    ::close(out_);
  if (in_ >= 0)
    ::close(in_);
}

std::optional<std::string> child::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      auto line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || out_ < 0)
      return std::nullopt;
    pollfd pfd{out_, POLLIN, 0};
    auto rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc <= 0)
      return std::nullopt;
    char buf[4096];
    auto n = ::read(out_, buf, sizeof(buf));
    if (n <= 0) {
      ::close(out_);
      out_ = -1;
      return std::nullopt;
    }
    buffer_.append(buf, static_cast<size_t>(n));
    transcript_.append(buf, static_cast<size_t>(n));
  }
}

std::optional<std::string> child::wait_for(const std::string& prefix,
                                           std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    auto line = read_line(left);
    if (!line)
      return std::nullopt;
    if (line->compare(0, prefix.size(), prefix) == 0)
      return line->substr(prefix.size());
  }
}

void child::write_line(const std::string& line) {
  auto text = line + "\n";
  if (in_ < 0 || ::write(in_, text.data(), text.size())
                    != static_cast<ssize_t>(text.size()))
    throw std::runtime_error("cannot write to the child's stdin");
}

void child::close_stdin() {
  if (in_ >= 0) {
    ::close(in_);
    in_ = -1;
  }
}

void child::kill() {
  if (!exited_ && pid_ > 0)
    ::kill(pid_, SIGKILL);
}

std::optional<int> child::try_wait() {
  if (!exited_) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_)
      return std::nullopt;
    exited_ = true;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return status_;
}

int child::wait(std::chrono::milliseconds timeout) {
  if (exited_)
    return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    auto rc = ::waitpid(pid_, &status, WNOHANG);
    if (rc == pid_) {
      exited_ = true;
      status_ = WIFEXITED(status) ? WEXITSTATUS(status)
                                  : 128 + WTERMSIG(status);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      exited_ = true;
      status_ = -1;
      return -1;
    }
    // Wait for the exit event itself: a pidfd becomes readable when the
    // child exits (bounded by the deadline).
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd >= 0) {
      pollfd pfd{pidfd, POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(std::max<long>(left.count(), 1)));
      ::close(pidfd);
    } else if (out_ >= 0) {
      read_line(std::min(left, std::chrono::milliseconds{50}));
    }
  }
}

std::pair<int, uint16_t> listening_socket() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::listen(fd, 8) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("cannot listen on 127.0.0.1: "
                             + std::string{std::strerror(errno)});
  return {fd, ntohs(addr.sin_port)};
}

uint64_t memory_kib(pid_t pid, const std::string& field) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, field.size(), field) == 0)
      return std::stoull(line.substr(field.size()));
  return 0;
}

} // namespace test
