// irepa-fuzz-replay: the harnesses of tests/fuzz without libFuzzer (any compiler; built with
// ASan + UBSan). Replays every file of the corpus folders given, then, for --seconds, feeds
// mutations of them (bit flips, byte runs set to 0x00 / 0xff / random, truncations, duplicated
// and deleted spans, size fields overwritten with extreme values) from a seeded generator, so a
// run is reproducible from its seed. Exits 0 when only irepa::Error came out; a crash or a
// sanitizer report ends it non-zero, and the input is written to --artifact (default
// ./fuzz-crash-<target>) before each call so that the one that failed is on disk.
//
//   irepa-fuzz-replay safetensors tests/fuzz/corpus/safetensors --seconds 10 --seed 7
//   irepa-fuzz-replay --list

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "fuzz_target.hpp"

namespace fs = std::filesystem;

namespace {

std::vector<std::uint8_t> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void mutate(std::vector<std::uint8_t>& b, std::mt19937_64& g) {
  auto pick = [&](std::size_t n) { return n ? static_cast<std::size_t>(g() % n) : 0; };
  const int rounds = 1 + static_cast<int>(g() % 4);
  for (int r = 0; r < rounds; ++r) {
    switch (g() % 8) {
      case 0:  // bit flip
        if (!b.empty()) b[pick(b.size())] ^= static_cast<std::uint8_t>(1u << (g() % 8));
        break;
      case 1:  // random byte
        if (!b.empty()) b[pick(b.size())] = static_cast<std::uint8_t>(g());
        break;
      case 2: {  // a run of 0x00 / 0xff
        if (b.empty()) break;
        const std::size_t at = pick(b.size()), n = std::min<std::size_t>(1 + g() % 16, b.size() - at);
        std::memset(b.data() + at, (g() & 1) ? 0xff : 0x00, n);
        break;
      }
      case 3:  // truncation
        b.resize(pick(b.size() + 1));
        break;
      case 4: {  // duplicate a span
        if (b.empty() || b.size() > (1u << 22)) break;
        const std::size_t at = pick(b.size()), n = std::min<std::size_t>(1 + g() % 64, b.size() - at);
        const std::vector<std::uint8_t> span(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(pick(b.size())), span.begin(), span.end());
        break;
      }
      case 5: {  // delete a span
        if (b.empty()) break;
        const std::size_t at = pick(b.size()), n = std::min<std::size_t>(1 + g() % 64, b.size() - at);
        b.erase(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
        break;
      }
      case 6: {  // an extreme 32- or 64-bit value where a size field may be
        if (b.size() < 8) break;
        static const std::uint64_t vals[] = {0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
                                             0x7fffffffffffffffull, 0x8000000000000000ull, 0xffffffffffffffffull};
        const std::uint64_t v = vals[g() % (sizeof vals / sizeof vals[0])];
        const std::size_t w = (g() & 1) ? 4 : 8, at = pick(b.size() - w + 1);
        std::memcpy(b.data() + at, &v, w);
        break;
      }
      default: {  // an ASCII digit run (text formats: JSON numbers, npy shapes, YAML)
        if (b.empty()) break;
        const std::size_t at = pick(b.size()), n = 1 + g() % 24;
        std::vector<std::uint8_t> digits(n);
        for (auto& d : digits) d = static_cast<std::uint8_t>('0' + g() % 10);
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), digits.begin(), digits.end());
        break;
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto& reg = irepa::fuzz::registry();
  if (argc >= 2 && std::string(argv[1]) == "--list") {
    for (const auto& [name, body] : reg) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (argc < 2 || !reg.contains(argv[1])) {
    std::fprintf(stderr, "usage: irepa-fuzz-replay TARGET [CORPUS_DIR_OR_FILE...] [--seconds S] [--seed N] [--artifact PATH]\n");
    std::fprintf(stderr, "targets:");
    for (const auto& [name, body] : reg) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  const std::string target = argv[1];
  const irepa::fuzz::Body body = reg.at(target);
  double seconds = 0;
  std::uint64_t seed = 1;
  std::string artifact = "fuzz-crash-" + target;
  std::vector<std::vector<std::uint8_t>> corpus;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) seconds = std::stod(argv[++i]);
    else if (a == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
    else if (a == "--artifact" && i + 1 < argc) artifact = argv[++i];
    else if (fs::is_directory(a)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(a))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) corpus.push_back(read_all(f));
    } else if (fs::is_regular_file(a)) {
      corpus.push_back(read_all(a));
    } else {
      std::fprintf(stderr, "irepa-fuzz-replay: '%s' is neither a corpus folder nor a file\n", a.c_str());
      return 2;
    }
  }
  if (corpus.empty()) corpus.emplace_back();
  auto run = [&](const std::vector<std::uint8_t>& b) {
    if (seconds > 0) {  // the input on disk first: a crash leaves it behind
      std::ofstream f(artifact, std::ios::binary | std::ios::trunc);
      f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    }
    body(b.data(), b.size());
  };
  for (const auto& b : corpus) run(b);
  std::size_t execs = corpus.size();
  std::mt19937_64 g(seed);
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
    std::vector<std::uint8_t> b = corpus[g() % corpus.size()];
    mutate(b, g);
    run(b);
    ++execs;
  }
  if (seconds > 0) fs::remove(artifact);
  std::printf("%s: %zu corpus inputs replayed, %zu runs in all (seed %llu), only irepa::Error came out\n", target.c_str(), corpus.size(),
              execs, static_cast<unsigned long long>(seed));
  return 0;
}
