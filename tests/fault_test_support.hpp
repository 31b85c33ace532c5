#pragma once
// Helpers of the fault tests (test_reliability, test_run_faults): fresh draws, a fresh folder per
// case, raw bytes to a file.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_support.hpp"

namespace irepa::test {

/// A fresh draw in [lo, hi).
inline std::int64_t draw(std::int64_t lo, std::int64_t hi) {
  Tensor<std::int64_t> t(Shape{1});
  rng().randint(t.view(), lo, hi);
  return t[0];
}

/// An empty folder under the system's temporary folder, named after the case and a fresh draw.
inline std::filesystem::path fault_dir(const std::string& name) {
  const std::filesystem::path d = std::filesystem::temp_directory_path() /
                                  ("irepa_rel_" + name + "_" + std::to_string(rng().seed()) + "_" + std::to_string(draw(0, 100000)));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

inline void write_bytes(const std::filesystem::path& p, const std::string& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

}  // namespace irepa::test
