#pragma once
// Small pieces the command-line tools share: atomic JSON files (a manifest or report is either
// the old one or the new one, never half of either) and a progress line with rate and ETA.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <irepa/core/error.hpp>
#include <irepa/io/files.hpp>
#include <irepa/io/json.hpp>

namespace irepa::examples {

/// Writes j to path through a temporary file of this process, renamed into place.
inline void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& j) {
  io::write_file_atomic(path.string(), j.dump(2) + "\n", "json");
}

/// The manifest of a resumable output folder (dir/man). Rank 0 creates the folder and writes
/// `want` when there is no manifest (a folder that exists with other files is refused); other
/// ranks wait up to a minute for it. An existing manifest must agree with want on every key in
/// keys. Returns the manifest found, or want.
inline nlohmann::json claim_folder(const std::filesystem::path& dir, const std::filesystem::path& man, const nlohmann::json& want,
                                   const std::vector<std::string>& keys, int rank, const std::string& tool, const std::string& flag) {
  namespace fs = std::filesystem;
  if (rank != 0)
    for (int i = 0; i < 600 && !fs::exists(man); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (fs::exists(man)) {
    nlohmann::json have;
    try {
      have = io::parse_json(io::read_regular_file(man.string(), tool), man.string());
    } catch (const Error& e) {
      fail("{}: '{}' is not a manifest {} wrote ({})", tool, man.string(), tool, e.what());  // (tool first: main prints as is)
    }
    for (const auto& k : keys)
      IREPA_CHECK(have.value(k, nlohmann::json()) == want.at(k),
                  "{}: '{}' was started with {} = {}, this run has {}: continue it with the same settings or use another {}", tool,
                  dir.string(), k, io::json_brief(have.value(k, nlohmann::json())), io::json_brief(want.at(k)), flag);
    return have;
  }
  IREPA_CHECK(rank == 0, "{}: rank {}: rank 0 wrote no '{}' within a minute", tool, rank, man.string());
  std::error_code ec;
  IREPA_CHECK(!fs::exists(dir) || fs::is_empty(dir, ec), "{}: '{}' exists and is not an {} folder (no {}); it is not written into", tool,
              dir.string(), tool, man.filename().string());
  fs::create_directories(dir);
  write_json_atomic(man, want);
  return want;
}

/// Prints a tool's error to stderr once prefixed with the tool's name (messages the tool made
/// itself already start with it); returns the exit status 1.
inline int report_error(const std::string& tool, const std::exception& e) {
  const std::string m = e.what();
  std::fprintf(stderr, "%s%s\n", m.rfind(tool + ":", 0) == 0 ? "" : (tool + ": ").c_str(), m.c_str());
  return 1;
}

/// "12m05s", "1h02m", "45s".
inline std::string fmt_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  const auto t = static_cast<long long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

/// A progress line: "<what> done/total, rate/s, ETA"; rewritten in place on a terminal, one line
/// per update otherwise (logs stay readable). The rate counts only work done since start.
class Progress {
 public:
  Progress(std::string what, std::int64_t total, std::int64_t already = 0)
      : what_(std::move(what)), total_(total), done_(already), start_done_(already), tty_(::isatty(::fileno(stdout)) != 0) {}
  void add(std::int64_t n) {
    done_ += n;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double rate = s > 0 ? static_cast<double>(done_ - start_done_) / s : 0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : -1;
    std::printf("%s%s %lld/%lld, %.1f/s, elapsed %s, ETA %s%s", tty_ ? "\r" : "", what_.c_str(), static_cast<long long>(done_),
                static_cast<long long>(total_), rate, fmt_duration(s).c_str(), fmt_duration(eta).c_str(), tty_ ? "   " : "\n");
    if (tty_ && done_ >= total_) std::printf("\n");
    std::fflush(stdout);
  }
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }
  double rate() const { return seconds() > 0 ? static_cast<double>(done_ - start_done_) / seconds() : 0; }

 private:
  std::string what_;
  std::int64_t total_, done_, start_done_;
  bool tty_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace irepa::examples
