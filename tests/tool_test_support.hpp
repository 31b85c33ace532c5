#pragma once
// Helpers for the tests that run our programs: run one with arguments (output to a log file),
// read a file whole, and read one scalar per line of a JSONL log.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "irepa/io/npz.hpp"
#include "irepa/io/safetensors.hpp"
#include "test_support.hpp"

namespace irepa::test {

/// Runs `tool args > log 2>&1`; returns the shell's status.
inline int run_tool(const std::string& tool, const std::string& args, const std::filesystem::path& log) {
  const std::string cmd = tool + " " + args + " > " + log.string() + " 2>&1";
  return std::system(cmd.c_str());
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

/// The value of "key" on every line of a JSONL log (a missing key fails the test).
inline std::vector<double> jsonl_values(const std::filesystem::path& p, const std::string& key) {
  std::ifstream log(p);
  std::vector<double> out;
  for (std::string l; std::getline(log, l);) {
    const auto k = l.find("\"" + key + "\":");
    REQUIRE(k != std::string::npos);
    out.push_back(std::stod(l.substr(k + key.size() + 3)));
  }
  return out;
}

/// Mean of v[a .. a + n).
inline double window_mean(const std::vector<double>& v, std::size_t a, std::size_t n) {
  REQUIRE(a + n <= v.size());
  double m = 0;
  for (std::size_t i = a; i < a + n; ++i) m += v[i] / static_cast<double>(n);
  return m;
}

/// Two shards of 12 random images [1, 8, 8] (uint8), labels and HOG-like targets
/// features.hog [12, 16, 12]: the small dataset the command-line tests train on.
inline void write_tiny_shards(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  for (int s = 0; s < 2; ++s) {
    Tensor<std::int64_t> px(Shape{12 * 64}), labels(Shape{12});
    rng().randint(px.view(), 0, 256);
    rng().randint(labels.view(), 0, 10);
    Tensor<std::uint8_t> img(Shape{12, 1, 8, 8});
    for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(px[i]);
    io::SafeTensorsWriter w;
    w.add("images", img);
    w.add("labels", labels);
    w.add("features.hog", randn<float>({12, 16, 12}));
    w.write((dir / ("part" + std::to_string(s) + ".safetensors")).string());
  }
}

/// A shard of n random RGB images [n, 3, side, side] (uint8) and labels in [0, classes).
inline void write_rgb_shard(const std::filesystem::path& path, std::int64_t n, std::int64_t side, std::int64_t classes) {
  std::filesystem::create_directories(path.parent_path());
  Tensor<std::int64_t> px(Shape{n * 3 * side * side}), labels(Shape{n});
  rng().randint(px.view(), 0, 256);
  rng().randint(labels.view(), 0, classes);
  Tensor<std::uint8_t> img(Shape{n, 3, side, side});
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(px[i]);
  io::SafeTensorsWriter w;
  w.add("images", img);
  w.add("labels", labels);
  w.write(path.string());
}

/// Reference statistics as a fid_stats .npz holds them: mu [2048] random, sigma [2048, 2048] diagonal.
inline void write_fid_stats(const std::filesystem::path& path) {
  io::NpzWriter stats(path.string());
  Tensor<double> mu = rand_uniform(Shape{2048}, 0.0, 0.5), sigma(Shape{2048, 2048});
  for (std::int64_t i = 0; i < 2048; ++i) sigma(i, i) = 0.01 + 0.01 * mu[i];
  stats.add<double>("mu", mu.cview());
  stats.add<double>("sigma", sigma.cview());
  stats.finish();
}

}  // namespace irepa::test
