#pragma once
// Processes of a data-parallel job and the collectives between them. A Communicator<D> sums,
// broadcasts and gathers tensors that live on device D with the engine of the job (MPI between
// CPU processes: train/mpi_communicator.hpp; NCCL between GPUs: train/nccl_communicator.cuh; one
// process: SingleProcess). The trainer only calls these; every algorithm is the engine's.
//
// Where a process sits (rank, world size, local rank) comes from the launcher's variables:
// Open MPI's (mpirun) or torchrun's (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
//
// Every collective that waits has a deadline (collective_timeout): a peer that died or hangs
// ends in an irepa::Error naming this rank and the collective, never in a hang.

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "irepa/core/concepts.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa {

/// Where this process sits in its job, read from the launcher's environment.
struct LaunchInfo {
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string launcher = "single";  // single | mpirun | torchrun
  std::string master_addr;          // torchrun: rank 0's host, for the NCCL id rendezvous
  int master_port = 0;

  bool distributed() const { return world > 1; }

  /// Open MPI's OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE} (also set by a plain
  /// `mpirun`), else torchrun's RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE /
  /// MASTER_ADDR / MASTER_PORT, else one process. A malformed or inconsistent value is an error.
  static LaunchInfo from_env() {
    LaunchInfo l;
    if (const char* r = std::getenv("OMPI_COMM_WORLD_RANK")) {
      l.launcher = "mpirun";
      l.rank = read_int("OMPI_COMM_WORLD_RANK", r);
      l.world = read_int("OMPI_COMM_WORLD_SIZE", need("OMPI_COMM_WORLD_SIZE"));
      l.local_rank = read_int("OMPI_COMM_WORLD_LOCAL_RANK", env_or("OMPI_COMM_WORLD_LOCAL_RANK", "0"));
      l.local_world = read_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_or("OMPI_COMM_WORLD_LOCAL_SIZE", "1"));
    } else if (const char* w = std::getenv("WORLD_SIZE")) {
      l.launcher = "torchrun";
      l.world = read_int("WORLD_SIZE", w);
      l.rank = read_int("RANK", need("RANK"));
      l.local_rank = read_int("LOCAL_RANK", env_or("LOCAL_RANK", "0"));
      l.local_world = read_int("LOCAL_WORLD_SIZE", env_or("LOCAL_WORLD_SIZE", std::to_string(l.world).c_str()));
      l.master_addr = env_or("MASTER_ADDR", "127.0.0.1");
      l.master_port = read_int("MASTER_PORT", env_or("MASTER_PORT", "29500"));
    }
    IREPA_CHECK(l.world >= 1 && l.rank >= 0 && l.rank < l.world, "launch: rank {} of a world of {} ({})", l.rank, l.world, l.launcher);
    IREPA_CHECK(l.local_world >= 1 && l.local_rank >= 0 && l.local_rank < l.local_world, "launch: local rank {} of {} ({})", l.local_rank,
                l.local_world, l.launcher);
    return l;
  }

 private:
  static const char* env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v ? v : fallback;
  }
  static const char* need(const char* name) {
    const char* v = std::getenv(name);
    IREPA_CHECK(v != nullptr, "launch: {} is not set (a launcher sets it with the others)", name);
    return v;
  }
  static int read_int(const char* name, const char* v) {
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    IREPA_CHECK(end != v && *end == '\0' && x >= 0 && x < (1L << 30), "launch: {}='{}' is not a non-negative integer", name, v);
    return static_cast<int>(x);
  }
};

/// How long a collective may wait for its peers: IREPA_COLLECTIVE_TIMEOUT seconds, default 1800
/// (torch.distributed's default; a checkpoint or sample grid on rank 0 delays the others).
inline double collective_timeout_seconds() {
  if (const char* v = std::getenv("IREPA_COLLECTIVE_TIMEOUT")) {
    char* end = nullptr;
    const double s = std::strtod(v, &end);
    IREPA_CHECK(end != v && *end == '\0' && s > 0, "IREPA_COLLECTIVE_TIMEOUT='{}' is not a positive number of seconds", v);
    return s;
  }
  return 1800.0;
}

/// Element types a collective carries.
enum class CollectiveType { f32, f64, i64 };
template <class T>
constexpr CollectiveType collective_type() {
  if constexpr (std::is_same_v<T, float>) return CollectiveType::f32;
  else if constexpr (std::is_same_v<T, double>) return CollectiveType::f64;
  else {
    static_assert(std::is_same_v<T, std::int64_t>, "collectives carry float, double or int64");
    return CollectiveType::i64;
  }
}

/// The processes of a job, on device D. Every rank must call the same collectives in the
/// same order (the engines' rule).
template <class D>
class Communicator {
 public:
  using Context = ContextOf<D>;
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world() const = 0;
  /// The engine, in words ("one process", "MPI (Open MPI v4.1.4), 2 processes", "NCCL 2.28 ...").
  virtual std::string describe() const = 0;

  /// x = the sum of every rank's x, in place; returns when it is done on this stream.
  template <class T>
  void all_reduce_sum(const Context& ctx, TensorView<T, D> x) {
    start_all_reduce_sum(ctx, x);
    wait_all(ctx);
  }
  /// Starts the sum (x must not be touched until wait_all); sums start in call order.
  template <class T>
  void start_all_reduce_sum(const Context& ctx, TensorView<T, D> x) {
    if (world() > 1 && x.numel() > 0) start_sum(ctx, x.data(), x.numel(), collective_type<T>());
  }
  /// Completes every started sum. On the CPU this waits; on a GPU the context's stream waits.
  virtual void wait_all(const Context& ctx) = 0;
  /// x = root's x.
  template <class T>
  void broadcast(const Context& ctx, TensorView<T, D> x, int root = 0) {
    if (world() > 1 && x.numel() > 0) broadcast_raw(ctx, x.data(), x.numel(), collective_type<T>(), root);
  }
  /// Every rank's value, in rank order (on the host; a step's rare question, such as which
  /// rank's loss went non-finite).
  virtual std::vector<std::int64_t> all_gather(const Context& ctx, std::int64_t value) = 0;
  /// Returns when every collective this rank started has finished, or throws after the
  /// deadline (a GPU engine's kernels run asynchronously; the host waits here, at a flush).
  virtual void synchronize(const Context& ctx) = 0;
  /// Ends every process of the job (after an error on this one), with the given exit code.
  [[noreturn]] virtual void abort(int code) = 0;

 protected:
  virtual void start_sum(const Context& ctx, void* data, std::int64_t n, CollectiveType type) = 0;
  virtual void broadcast_raw(const Context& ctx, void* data, std::int64_t n, CollectiveType type, int root) = 0;
};

/// A job of one process: every collective is the identity.
template <class D>
class SingleProcess final : public Communicator<D> {
 public:
  using Context = ContextOf<D>;
  int rank() const override { return 0; }
  int world() const override { return 1; }
  std::string describe() const override { return "one process"; }
  void wait_all(const Context&) override {}
  std::vector<std::int64_t> all_gather(const Context&, std::int64_t value) override { return {value}; }
  void synchronize(const Context&) override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }

 protected:
  void start_sum(const Context&, void*, std::int64_t, CollectiveType) override {}
  void broadcast_raw(const Context&, void*, std::int64_t, CollectiveType, int) override {}
};

/// The one-process communicator of device D (what a trainer uses unless given another).
template <class D>
Communicator<D>& single_process() {
  static SingleProcess<D> one;
  return one;
}

/// The gradient arena cut into buckets of about `bucket_elements`, from its end (the final
/// layer and last blocks, whose backward finishes first) to its start. hook() is the model's
/// GradReady: as each reported range completes a bucket, that bucket's sum starts, so the
/// all-reduce of early buckets overlaps the rest of the backward. finish() starts the buckets
/// nobody reported (embedders, parameters the model does not report) and completes them all.
/// Buckets start in the same order on every rank, since every rank runs the same backward.
template <class T, class D>
class GradientBuckets {
 public:
  using Context = ContextOf<D>;
  GradientBuckets(Communicator<D>& comm, TensorView<T, D> grads, std::int64_t bucket_elements)
      : comm_(comm), grads_(grads) {
    IREPA_CHECK(bucket_elements > 0, "GradientBuckets: a bucket of {} elements", bucket_elements);
    for (std::int64_t hi = grads.numel(); hi > 0; hi -= bucket_elements)
      buckets_.push_back({std::max<std::int64_t>(0, hi - bucket_elements), hi, 0, false});
  }

  std::size_t size() const { return buckets_.size(); }
  /// [first, last) of bucket k (k = 0 is the arena's end).
  std::pair<std::int64_t, std::int64_t> bucket(std::size_t k) const { return {buckets_.at(k).first, buckets_.at(k).last}; }

  /// The model's GradReady for this step: ranges must be disjoint (each gradient reported once).
  GradReady hook(const Context& ctx) {
    if (comm_.world() == 1) return {};
    return [this, &ctx](std::int64_t first, std::int64_t last) { ready(ctx, first, last); };
  }

  void ready(const Context& ctx, std::int64_t first, std::int64_t last) {
    IREPA_CHECK(first >= 0 && last <= grads_.numel() && first < last, "GradientBuckets: range [{}, {}) outside an arena of {}", first, last,
                grads_.numel());
    for (auto& b : buckets_) {
      const std::int64_t lo = std::max(first, b.first), hi = std::min(last, b.last);
      if (hi <= lo) continue;
      b.done += hi - lo;
      IREPA_CHECK(b.done <= b.last - b.first, "GradientBuckets: gradients [{}, {}) reported twice in one step", first, last);
      if (b.done == b.last - b.first && !b.started) start(ctx, b), ++early_;
    }
  }

  /// Starts what has not started, waits for every sum, and gets ready for the next step.
  void finish(const Context& ctx) {
    for (auto& b : buckets_)
      if (!b.started) start(ctx, b);
    comm_.wait_all(ctx);
    last_early_ = early_;
    for (auto& b : buckets_) b.done = 0, b.started = false;
    early_ = 0;
  }
  /// How many buckets started before finish() in the last step (those overlapped with the backward).
  std::size_t last_started_early() const { return last_early_; }

 private:
  struct Bucket {
    std::int64_t first, last, done;
    bool started;
  };
  void start(const Context& ctx, Bucket& b) {
    b.started = true;
    comm_.start_all_reduce_sum(ctx, grads_.slice(0, b.first, b.last - b.first));
  }

  Communicator<D>& comm_;
  TensorView<T, D> grads_;
  std::vector<Bucket> buckets_;
  std::size_t early_ = 0, last_early_ = 0;
};

}  // namespace irepa
