#pragma once
// TensorBoard event files beside log.jsonl: events.out.tfevents.<unix time>.<host>.<pid>.<n>,
// TFRecord framing (io/tfrecord.hpp) around Event messages. The first record carries the file
// version; then one Event per logged step with every scalar (the same values as log.jsonl's
// line, as float), sample grids as PNG images, and text (the run's settings). Tags are the
// reference's: denoising_loss, proj_loss, grad_norm, lr, loss, samples, gt_samples.
//
// The messages are encoded by Debian's libprotobuf from src/tensorboard/event.proto, so this is
// the one part of irepa that is compiled: link irepa::tensorboard. This header names no
// protobuf type (CUDA translation units include the trainer).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "irepa/train/logger.hpp"

namespace irepa {

class EventFileWriter final : public LogSink {
 public:
  /// A new event file in dir (created if missing); a name that exists is never reused, so a
  /// resumed run adds a file and TensorBoard reads them in order. Writes the version record.
  explicit EventFileWriter(const std::string& dir);
  ~EventFileWriter() override;
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  void scalars(std::int64_t step, const std::map<std::string, double>& values) override;
  void image(std::int64_t step, const std::string& tag, const std::string& png, std::int64_t height, std::int64_t width,
             int channels) override;
  void text(std::int64_t step, const std::string& tag, const std::string& markdown) override;
  /// fdatasync: the records so far survive a crash of the machine (each record is written
  /// whole as it comes, so a killed process loses nothing written).
  void flush() override;

  const std::string& path() const;
  std::int64_t records() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// TrainerOptions::log_sink for TensorBoard: an EventFileWriter in the run folder.
inline std::function<std::unique_ptr<LogSink>(const std::string&)> tensorboard_sink() {
  return [](const std::string& run_dir) -> std::unique_ptr<LogSink> { return std::make_unique<EventFileWriter>(run_dir); };
}

}  // namespace irepa
