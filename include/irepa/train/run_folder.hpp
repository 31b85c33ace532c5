#pragma once
// A run folder held by one trainer at a time:
//  - a lock (flock on <run>/.lock, released by the kernel when the process ends, even by
//    kill -9) keeps a second process out, and the error says which process holds it;
//  - temporaries left by a killed writer (<name>.tmp.<pid>) are removed at start;
//  - a fresh run refuses a folder that already holds a run (args.json, log.jsonl, checkpoints,
//    sample grids) unless it resumes, or is told to overwrite, which clears them first;
//  - on resume, the settings stored in the checkpoint are compared with the run's: a change
//    that alters the model or the objective is an error listing every such field; a change
//    that may legitimately differ (rates, steps, logging, where it runs) is applied and listed.

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "irepa/core/error.hpp"
#include "irepa/io/json.hpp"

namespace irepa {

/// Settings that a resumed run may change (both tools' spellings; '-' and '_' are alike).
inline std::vector<std::string> default_resume_may_change() {
  return {"output-dir", "exp-name", "resume-step", "max-train-steps", "epochs", "checkpointing-steps", "sampling-steps",
          "sample-grid-freq", "sample-grid-per-class", "log-every", "log-freq", "learning-rate", "lr", "blr", "min-lr",
          "threads", "device", "matmul-precision", "attention", "data-dir", "data-path", "image-dir", "encoder-dir", "vae",
          "samples-per-class", "cfg-scale", "cfg", "sample-steps", "num-sampling-steps", "sampling-method", "interval-min",
          "interval-max", "config", "overwrite", "skip-nonfinite-steps", "quiet", "eval-per-class", "compare", "steps", "report-to",
          "online-eval", "evaluate-gen", "eval-freq", "num-images", "gen-bsz", "fid-stats", "inception"};
}

/// A setting's name with '_' spelled '-': the reference's SiT flags use dashes, its JiT flags
/// underscores, and both name the same setting (config keys, flags, YAML keys).
inline std::string dashed_key(std::string s) {
  for (auto& c : s)
    if (c == '_') c = '-';
  return s;
}

/// The differences between a checkpoint's settings and the run's: `errors` for the fields that
/// must agree, `changes` for those in may_change. Each line names the field and both values.
struct ConfigDiff {
  std::vector<std::string> errors, changes;
};
inline ConfigDiff compare_run_config(const nlohmann::json& stored, const nlohmann::json& current, const std::vector<std::string>& may_change) {
  ConfigDiff d;
  if (!stored.is_object() || !current.is_object()) return d;  // a library caller without flags: nothing to compare
  std::vector<std::string> keys;
  for (auto it = stored.begin(); it != stored.end(); ++it) keys.push_back(it.key());
  for (auto it = current.begin(); it != current.end(); ++it)
    if (!stored.contains(it.key())) keys.push_back(it.key());
  for (const auto& k : keys) {
    const nlohmann::json a = stored.contains(k) ? stored[k] : nlohmann::json("(absent)");
    const nlohmann::json b = current.contains(k) ? current[k] : nlohmann::json("(absent)");
    if (a == b) continue;
    bool ok = false;
    for (const auto& m : may_change) ok = ok || dashed_key(m) == dashed_key(k);
    (ok ? d.changes : d.errors).push_back(fmt::format("{}: {} in the checkpoint, {} now", k, io::json_brief(a), io::json_brief(b)));
  }
  return d;
}

/// Holds a run folder for this process (rank 0 of a job) from construction to destruction.
class RunFolder {
 public:
  /// Creates dir (and checkpoints/), takes the lock, removes stale temporaries, and for a fresh
  /// run (resume false) refuses a folder holding a run unless overwrite, which clears it.
  RunFolder(const std::filesystem::path& dir, bool resume, bool overwrite) : dir_(dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    IREPA_CHECK(!fs::exists(dir, ec) || fs::is_directory(dir, ec), "train: the run folder '{}' exists and is not a folder", dir.string());
    fs::create_directories(dir / "checkpoints");
    lock(dir / ".lock");
    for (const auto& sub : {dir, dir / "checkpoints", dir / "samples"}) {
      if (!fs::is_directory(sub, ec)) continue;
      for (const auto& e : fs::directory_iterator(sub)) {
        const std::string n = e.path().filename().string();
        if (e.is_regular_file(ec) && (n.find(".tmp.") != std::string::npos || n.ends_with(".tmp"))) {
          fs::remove(e.path(), ec);
          ++stale_removed_;
        }
      }
    }
    const std::vector<fs::path> used = run_files();
    if (resume || used.empty()) return;
    IREPA_CHECK(overwrite,
                "train: the run folder '{}' already holds a run ({}{}); resume it with --resume-step, choose another --exp-name, "
                "or pass --overwrite to start it again (its checkpoints, log and grids are deleted)",
                dir.string(), used.front().lexically_relative(dir).string(), used.size() > 1 ? fmt::format(" and {} more", used.size() - 1) : "");
    for (const auto& p : used) fs::remove(p);
    cleared_ = used.size();
  }
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

  std::size_t stale_removed() const { return stale_removed_; }
  std::size_t cleared() const { return cleared_; }

 private:
  /// The files that make a folder a run: args.json, log.jsonl, TensorBoard's events.out.tfevents.*,
  /// checkpoints/*.safetensors, samples/*.png.
  std::vector<std::filesystem::path> run_files() const {
    namespace fs = std::filesystem;
    std::vector<fs::path> out;
    std::error_code ec;
    for (const char* f : {"args.json", "log.jsonl"})
      if (fs::exists(dir_ / f, ec)) out.push_back(dir_ / f);
    for (const auto& e : fs::directory_iterator(dir_, ec))
      if (e.is_regular_file(ec) && e.path().filename().string().starts_with("events.out.tfevents.")) out.push_back(e.path());
    for (const auto& [sub, ext] : {std::pair{"checkpoints", ".safetensors"}, std::pair{"samples", ".png"}}) {
      if (!fs::is_directory(dir_ / sub, ec)) continue;
      for (const auto& e : fs::directory_iterator(dir_ / sub))
        if (e.is_regular_file(ec) && e.path().extension() == ext) out.push_back(e.path());
    }
    return out;
  }

  void lock(const std::filesystem::path& p) {
    lock_.fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_.fd < 0) fail("train: cannot open the lock file '{}': {}", p.string(), std::strerror(errno));
    if (::flock(lock_.fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char who[256] = {};
      const ssize_t n = ::pread(lock_.fd, who, sizeof who - 1, 0);
      std::string holder = n > 0 ? std::string(who, static_cast<std::size_t>(n)) : std::string("another process");
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      ::close(lock_.fd);
      lock_.fd = -1;
      if (err == EWOULDBLOCK)
        fail("train: the run folder '{}' is in use by {} (lock '{}'); two trainers must not share a folder", dir_.string(), holder, p.string());
      fail("train: cannot lock '{}': {}", p.string(), std::strerror(err));
    }
    char host[128] = {};
    ::gethostname(host, sizeof host - 1);
    const std::string who = fmt::format("process {} on {}\n", ::getpid(), host);
    if (::ftruncate(lock_.fd, 0) != 0 || ::pwrite(lock_.fd, who.data(), who.size(), 0) != static_cast<ssize_t>(who.size()))
      fail("train: cannot write the lock file '{}': {}", p.string(), std::strerror(errno));
  }

  /// The lock's descriptor: closed (releasing the lock) when the folder is let go, or when the
  /// constructor throws after taking it. The file stays (removing it would race a waiting process).
  struct Descriptor {
    int fd = -1;
    Descriptor() = default;
    Descriptor(const Descriptor&) = delete;
    Descriptor& operator=(const Descriptor&) = delete;
    ~Descriptor() {
      if (fd >= 0) ::close(fd);
    }
  };
  std::filesystem::path dir_;
  Descriptor lock_;
  std::size_t stale_removed_ = 0, cleared_ = 0;
};

}  // namespace irepa
