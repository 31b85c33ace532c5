#pragma once
// Training logs: every logged scalar as one JSON object per line (JSONL, each line flushed as it
// is written; the trainer writes a step's line when its scalars come back from the device, at
// the next log, checkpoint or sample step), and the human progress line (step, rate, ETA,
// losses, grad norm). LogSink: where else the records go (TensorBoard's event files,
// train/tensorboard.hpp), chosen by whoever builds the trainer.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "irepa/core/error.hpp"

namespace irepa {

class JsonlLogger {
 public:
  /// Appends to path (a resumed run continues the same file).
  explicit JsonlLogger(const std::string& path) : path_(path), out_(path, std::ios::app) {
    IREPA_CHECK(out_.good(), "JsonlLogger: cannot open '{}' for appending", path);
  }
  void log(std::int64_t step, const std::map<std::string, double>& scalars) {
    nlohmann::json j;
    j["step"] = step;
    for (const auto& [k, v] : scalars) j[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(std::to_string(v));
    out_ << j.dump() << '\n';
    out_.flush();
    IREPA_CHECK(out_.good(), "JsonlLogger: writing '{}' failed", path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

/// A second destination of a run's records, written on rank 0 beside log.jsonl: the step
/// scalars (the same values as its lines), sample grids as encoded PNGs, and text (the run's
/// settings). TensorBoard's event files implement it (irepa::tensorboard); so can a user's own.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void scalars(std::int64_t step, const std::map<std::string, double>& values) = 0;
  /// png: an encoded PNG of height x width pixels with channels 1 (grey) or 3 (RGB).
  virtual void image(std::int64_t step, const std::string& tag, const std::string& png, std::int64_t height, std::int64_t width,
                     int channels) = 0;
  virtual void text(std::int64_t step, const std::string& tag, const std::string& markdown) = 0;
  /// Everything written so far reaches the file (called at checkpoints and at the end).
  virtual void flush() {}
};

/// Seconds -> "1d 05:12:09" or "05:12:09" ("?" when unknown).
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<std::int64_t>(seconds + 0.5);
  const std::int64_t d = s / 86400;
  s %= 86400;
  const std::string hms = fmt::format("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return d > 0 ? fmt::format("{}d {}", d, hms) : hms;
}

/// "step 1200/400000 | 85.3 img/s | ETA 1d 05:12:09 | loss 0.6123 denoise 0.5210 align -0.4566 | grad 0.830"
inline std::string progress_line(std::int64_t step, std::int64_t total, double images_per_second, double eta_seconds,
                                 double total_loss, double denoising, double alignment, double grad_norm) {
  return fmt::format("step {}/{} | {:.1f} img/s | ETA {} | loss {:.4f} denoise {:.4f} align {:.4f} | grad {:.3f}", step, total,
                     images_per_second, format_duration(eta_seconds), total_loss, denoising, alignment, grad_norm);
}

/// Measures the rate over the steps since the last report and the ETA at that rate.
class RateMeter {
 public:
  explicit RateMeter(std::int64_t start_step = 0) : last_step_(start_step), last_(clock::now()) {}
  /// Images per second since the previous call (batch images per step).
  double rate(std::int64_t step, std::int64_t batch) {
    const auto now = clock::now();
    const double dt = std::chrono::duration<double>(now - last_).count();
    const double r = dt > 0 ? static_cast<double>((step - last_step_) * batch) / dt : 0.0;
    last_ = now;
    last_step_ = step;
    return r;
  }

 private:
  using clock = std::chrono::steady_clock;
  std::int64_t last_step_;
  clock::time_point last_;
};

}  // namespace irepa
