#pragma once

// The receiving loop of the select suites: one select over every channel
// still open, until each has fired `closed`.

#include <cstdint>
#include <string>
#include <vector>

#include "netchan/netchan.hpp"

namespace test {

/// Calls `on_value(i, v)` for each value v from the i-th receiver; returns
/// an empty string once every channel fired closed, else the first other
/// error.
template <class F>
std::string select_until_closed(
  const std::vector<netchan::receiver<uint64_t>>& rxs, F on_value) {
  std::vector<size_t> open(rxs.size());
  for (size_t i = 0; i < open.size(); ++i)
    open[i] = i;
  while (!open.empty()) {
    std::vector<netchan::select_case> cases;
    for (auto i : open)
      cases.push_back(netchan::on_receive(rxs[i]));
    auto r = netchan::select(std::move(cases));
    if (r.index == netchan::no_case)
      return netchan::to_string(r.error);
    auto which = open[r.index];
    if (netchan::is(r.error, netchan::errc::closed)) {
      open.erase(open.begin() + static_cast<std::ptrdiff_t>(r.index));
      continue;
    }
    auto v = r.value(rxs[which]);
    if (!v)
      return netchan::to_string(v.error());
    on_value(which, *v);
  }
  return {};
}

} // namespace test
