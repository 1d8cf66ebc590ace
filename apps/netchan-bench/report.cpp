// The table, the Go library's echo block, the targets, and --json; plus the
// measuring helpers every part uses.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <unistd.h>

#include "bench.hpp"
#include "process.hpp"

namespace bench {

double percentile(std::vector<double>& xs, double p) {
  if (xs.empty())
    return -1;
  std::sort(xs.begin(), xs.end());
  auto i = static_cast<size_t>(std::ceil(p * xs.size()));
  return xs[std::min(i == 0 ? 0 : i - 1, xs.size() - 1)];
}

uint64_t status_kb(pid_t pid, const char* field) {
  return test::memory_kib(pid == 0 ? ::getpid() : pid,
                          std::string{field} + ":");
}

void reset_peak() {
  // "5" resets VmHWM to the current resident set (Linux >= 4.0).
  std::ofstream out{"/proc/self/clear_refs"};
  out << "5";
}

void print_peak() {
  std::cout << "peak_kb " << status_kb(0, "VmHWM") << std::endl;
}

std::string arg_value(const std::vector<std::string>& args,
                      const std::string& name) {
  auto prefix = "--" + name + "=";
  for (auto& a : args)
    if (a.compare(0, prefix.size(), prefix) == 0) {
      auto v = a.substr(prefix.size());
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"')
        v = v.substr(1, v.size() - 2);
      return v;
    }
  return {};
}

namespace {

std::string fixed(double x, int digits) {
  if (x < 0)
    return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, x);
  return buf;
}

std::string mib(uint64_t kb) {
  return fixed(kb / 1024.0, kb < 100 * 1024 ? 1 : 0);
}

/// Peak resident MiB of a row's processes: each, or the largest of many.
std::string memory_column(const row& r) {
  if (r.memory.empty())
    return "-";
  if (r.memory.size() > 3) {
    uint64_t top = 0;
    for (auto& m : r.memory)
      top = std::max(top, m.peak_kb);
    return "max " + mib(top) + " of " + std::to_string(r.memory.size());
  }
  std::string s;
  for (auto& m : r.memory)
    s += (s.empty() ? "" : "/") + mib(m.peak_kb);
  return s;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string json_number(double x) {
  if (x < 0 || !std::isfinite(x))
    return "null";
  std::ostringstream out;
  out.precision(10);
  out << x;
  return out.str();
}

void print_json(const report& rep, const options& opt) {
  auto& out = std::cout;
  out << "{\n  \"machine\": " << json_string(rep.machine)
      << ",\n  \"load_before\": " << json_string(rep.load_before)
      << ",\n  \"load_after\": " << json_string(rep.load_after)
      << ",\n  \"seconds_per_scenario\": " << json_number(opt.seconds)
      << ",\n  \"total_seconds\": " << json_number(rep.total_seconds)
      << ",\n  \"rows\": [\n";
  for (size_t i = 0; i < rep.rows.size(); ++i) {
    auto& r = rep.rows[i];
    out << "    {\"id\": " << json_string(r.id)
        << ", \"group\": " << json_string(r.group)
        << ", \"scenario\": " << json_string(r.scenario)
        << ", \"detail\": " << json_string(r.detail)
        << ", \"values_per_second\": " << json_number(r.per_second)
        << ", \"median_us\": " << json_number(r.median_us)
        << ", \"p99_us\": " << json_number(r.p99_us)
        << ", \"max_us\": " << json_number(r.max_us)
        << ", \"sent\": " << r.sent << ", \"received\": " << r.received
        << ", \"returned\": " << r.returned
        << ", \"balanced\": " << (r.balanced() ? "true" : "false")
        << ", \"baseline\": " << json_string(r.baseline)
        << ", \"ratio\": " << json_number(r.ratio)
        << ", \"median_ratio\": " << json_number(r.latency_ratio)
        << ", \"kib_each\": " << json_number(r.kib_each)
        << ", \"note\": " << json_string(r.note) << ", \"processes\": [";
    for (size_t j = 0; j < r.memory.size(); ++j) {
      auto& m = r.memory[j];
      out << (j ? ", " : "") << "{\"who\": " << json_string(m.who)
          << ", \"peak_kb\": " << m.peak_kb;
      if (m.start_kb || m.end_kb)
        out << ", \"stall_start_kb\": " << m.start_kb
            << ", \"stall_end_kb\": " << m.end_kb;
      out << "}";
    }
    out << "]}" << (i + 1 < rep.rows.size() ? "," : "") << "\n";
  }
  out << "  ],\n  \"go_echo\": ";
  if (rep.echo.present)
    out << "{\"sent\": " << rep.echo.sent << ", \"received\": "
        << rep.echo.received << ", \"processed\": " << rep.echo.processed
        << ", \"not_received\": " << rep.echo.not_received
        << ", \"clients_connected\": " << rep.echo.clients
        << ", \"seconds\": " << json_number(rep.echo.seconds) << "}";
  else
    out << "null";
  out << ",\n  \"targets\": [\n";
  for (size_t i = 0; i < rep.targets.size(); ++i) {
    auto& t = rep.targets[i];
    out << "    {\"what\": " << json_string(t.what)
        << ", \"value\": " << json_number(t.value)
        << ", \"limit\": " << json_number(t.limit) << ", \"at_least\": "
        << (t.at_least ? "true" : "false") << ", \"met\": "
        << (t.met ? "true" : "false") << "}"
        << (i + 1 < rep.targets.size() ? "," : "") << "\n";
  }
  out << "  ]\n}\n";
}

void print_table(const report& rep, const options& opt) {
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"id", "scenario", "detail", "values/s", "med us", "p99 us",
                   "max us", "sent", "received", "returned", "vs", "x/s",
                   "x med", "peak RSS MiB", "KiB each"});
  for (auto& r : rep.rows)
    cells.push_back({r.id, r.scenario, r.detail, fixed(r.per_second, 0),
                     fixed(r.median_us, 0), fixed(r.p99_us, 0),
                     fixed(r.max_us, 0), std::to_string(r.sent),
                     std::to_string(r.received), std::to_string(r.returned),
                     r.baseline.empty() ? "-" : r.baseline,
                     fixed(r.ratio, 2), fixed(r.latency_ratio, 2),
                     memory_column(r), fixed(r.kib_each, 1)});
  std::vector<size_t> width(cells[0].size(), 0);
  for (auto& line : cells)
    for (size_t i = 0; i < line.size(); ++i)
      width[i] = std::max(width[i], line[i].size());
  for (auto& line : cells) {
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      // Text columns to the left, numbers to the right.
      bool left = i < 3 || i == 10 || i == 13;
      auto pad = std::string(width[i] - line[i].size(), ' ');
      text += (i ? "  " : "") + (left ? line[i] + pad : pad + line[i]);
    }
    while (!text.empty() && text.back() == ' ')
      text.pop_back();
    std::cout << text << '\n';
  }
  std::cout << "values/s: values delivered to the receiving application per "
               "second (echo: round trips; rendezvous: transfers).\n"
               "vs: the baseline row; x/s = values/s over its values/s; "
               "x med = median over its median.\n"
               "KiB each: resident memory one more idle channel costs "
               "(scale rows: hosted with both handles, or opened from "
               "another node).\n"
               "Every row: sent = received + returned (returned = handed "
               "back to the sender with an error).\n";
  for (auto& r : rep.rows) {
    if (!r.balanced())
      std::cout << "BOOKS DO NOT BALANCE: " << r.id << ": sent " << r.sent
                << " != received " << r.received << " + returned "
                << r.returned << '\n';
    if (!r.note.empty())
      std::cout << "NOTE " << r.id << ": " << r.note << '\n';
    if (r.id == "stall") {
      std::cout << "stalled receiver, resident MiB when the stall began -> "
                   "when it ended:";
      for (auto& m : r.memory)
        std::cout << ' ' << m.who << ' ' << mib(m.start_kb) << " -> "
                  << mib(m.end_kb) << ';';
      std::cout << '\n';
    }
  }
  if (rep.echo.present) {
    auto& e = rep.echo;
    std::cout << "\necho in the Go library's format (" << fixed(e.seconds, 1)
              << " s):\n"
              << "Sent: " << e.sent << "\nReceived: " << e.received
              << "\nProcessed: " << e.processed
              << "\nNot received: " << e.not_received
              << "\nclients connected: " << e.clients << "\n";
  }
  if (!rep.targets.empty()) {
    std::cout << "\ntargets (issue 9):\n";
    for (auto& t : rep.targets)
      std::cout << "  "
                << (t.value < 0 ? "not run" : t.met ? "met    " : "NOT MET")
                << "  " << t.what
                << ": " << fixed(t.value, 2) << (t.at_least ? " >= " : " <= ")
                << fixed(t.limit, 1) << '\n';
  }
  std::cout << "\n" << rep.machine << "; load before " << rep.load_before
            << ", after " << rep.load_after << "; " << fixed(opt.seconds, 1)
            << " s per scenario, " << fixed(rep.total_seconds, 0)
            << " s in all\n";
}

} // namespace

void print(const report& r, const options& opt) {
  if (opt.json)
    print_json(r, opt);
  else
    print_table(r, opt);
}

} // namespace bench
