#pragma once
// Helpers for the tests that run our programs: run one with arguments (output to a log file),
// read a file whole, and read one scalar per line of a JSONL log.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

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

}  // namespace irepa::test
