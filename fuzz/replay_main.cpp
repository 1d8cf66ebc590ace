// Runs a fuzz target over saved inputs, without libFuzzer: the ctest of
// every build replays the checked-in corpus this way.
//
//   netchan-fuzz-replay-<target> DIR|FILE...   run every input, count them
//   netchan-fuzz-replay-<target> --write-seeds DIR   write the seeds
//
// A violated invariant aborts. Zero inputs is a failure, so a missing or
// emptied corpus cannot pass.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz.hpp"

namespace fs = std::filesystem;

namespace {

int write_seeds(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  auto seeds = netchan::fuzz::seeds();
  for (auto& s : seeds) {
    std::ofstream out{dir / ("seed-" + s.name), std::ios::binary};
    out << s.bytes;
    if (!out) {
      std::fprintf(stderr, "cannot write seed %s\n", s.name.c_str());
      return 1;
    }
  }
  std::printf("wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
  return 0;
}

bool run_file(const fs::path& file) {
  std::ifstream in{file, std::ios::binary};
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", file.c_str());
    return false;
  }
  std::string bytes{std::istreambuf_iterator<char>{in},
                    std::istreambuf_iterator<char>{}};
  // Named before it runs: if it aborts, the log says which input did it.
  std::fprintf(stderr, "input %s (%zu bytes)\n", file.c_str(), bytes.size());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()),
                         bytes.size());
  return true;
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string{argv[1]} == "--write-seeds")
    return write_seeds(argv[2]);
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s DIR|FILE...\n       %s --write-seeds DIR\n",
                 argv[0], argv[0]);
    return 2;
  }
  size_t ran = 0;
  for (int i = 1; i < argc; ++i) {
    fs::path arg{argv[i]};
    std::error_code ec;
    if (fs::is_regular_file(arg, ec)) {
      if (!run_file(arg))
        return 1;
      ++ran;
      continue;
    }
    if (!fs::is_directory(arg, ec)) {
      std::fprintf(stderr, "%s is neither a file nor a directory\n", argv[i]);
      return 1;
    }
    std::vector<fs::path> files;
    for (auto& entry : fs::directory_iterator{arg, ec})
      if (entry.is_regular_file())
        files.push_back(entry.path());
    if (ec) {
      std::fprintf(stderr, "cannot list %s: %s\n", argv[i],
                   ec.message().c_str());
      return 1;
    }
    std::sort(files.begin(), files.end());
    for (auto& file : files) {
      if (!run_file(file))
        return 1;
      ++ran;
    }
  }
  std::printf("ran %zu inputs\n", ran);
  if (ran == 0) {
    std::fprintf(stderr, "no inputs: the corpus is missing or empty\n");
    return 1;
  }
  return 0;
}
