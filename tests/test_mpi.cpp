// Data-parallel training between CPU processes, run under `mpirun -np 2` (ctest: mpi_two_ranks).
// Every rank runs every test case in the same order (their collectives must match); shared
// random inputs come from a seed rank 0 draws and broadcasts, fresh each run.

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <random>
#include <thread>

#include "irepa/align/head.hpp"
#include "irepa/data/fashion_mnist.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/models/target_encoder.hpp"
#include "irepa/train/mpi_communicator.hpp"
#include "irepa/train/trainer.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {
std::uint64_t g_seed = 0;
MpiCommunicator* g_comm = nullptr;

MpiCommunicator& comm() { return *g_comm; }
int rank() { return comm().rank(); }
int world() { return comm().world(); }
/// Every rank's view of the run's shared generator for stream s.
Philox shared_rng(std::uint64_t s) { return Philox(g_seed, s); }

/// A folder every rank agrees on.
fs::path shared_dir(const std::string& name) { return fs::temp_directory_path() / ("irepa_mpi_" + name + "_" + std::to_string(g_seed)); }
const CpuContext& host() {
  static CpuContext one(1);
  return one;
}
void barrier() { (void)comm().all_gather(host(), 0); }
template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<std::size_t>(a.numel())) == 0;
}
}  // namespace

TEST_CASE("MPI: sums, broadcasts and gathers give every rank the same, engine-computed values", "[mpi]") {
  const CpuContext& ctx = host();
  REQUIRE(world() == 2);
  for (std::int64_t n : {std::int64_t{1}, std::int64_t{1000}, std::int64_t{12345}}) {
    std::vector<Tensor<double>> mine;
    for (int r = 0; r < world(); ++r) {
      Tensor<double> t(Shape{n});
      Philox g = shared_rng(100 + static_cast<std::uint64_t>(r));
      g.normal(t.view());
      mine.push_back(std::move(t));
    }
    Tensor<double> x = Tensor<double>::copy_of(mine[static_cast<std::size_t>(rank())].cview());
    Tensor<float> xf(Shape{n});
    for (std::int64_t i = 0; i < n; ++i) xf[i] = static_cast<float>(x[i]);
    comm().all_reduce_sum(ctx, x.view());
    comm().all_reduce_sum(ctx, xf.view());
    for (std::int64_t i = 0; i < n; ++i) {
      REQUIRE(x[i] == mine[0][i] + mine[1][i]);  // two addends: the same in either order
      REQUIRE(xf[i] == static_cast<float>(mine[0][i]) + static_cast<float>(mine[1][i]));
    }
    Tensor<std::int64_t> ids(Shape{n});
    for (std::int64_t i = 0; i < n; ++i) ids[i] = rank() == 1 ? i * 3 + 1 : -5;
    comm().broadcast(ctx, ids.view(), 1);
    for (std::int64_t i = 0; i < n; ++i) REQUIRE(ids[i] == i * 3 + 1);
  }
  CHECK(comm().all_gather(ctx, 10 * rank() + 7) == std::vector<std::int64_t>{7, 17});
  CHECK_THAT(comm().describe(), Catch::Contains("MPI") && Catch::Contains("2 processes"));
}

TEST_CASE("MPI: gradient buckets start as a model reports finished ranges and sum the whole arena", "[mpi]") {
  const CpuContext& ctx = host();
  const std::int64_t n = 1003;
  Tensor<float> g(Shape{n}), want(Shape{n});
  for (int r = 0; r < world(); ++r) {
    Tensor<float> t(Shape{n});
    Philox p = shared_rng(200 + static_cast<std::uint64_t>(r));
    p.uniform(t.view(), -1.0f, 1.0f);
    for (std::int64_t i = 0; i < n; ++i) want[i] = r == 0 ? t[i] : want[i] + t[i];
    if (r == rank()) ops::copy<float>(ctx, t.cview(), g.view());
  }
  GradientBuckets<float, Cpu> buckets(comm(), g.view(), 100);
  REQUIRE(buckets.size() == 11);
  REQUIRE(buckets.bucket(0) == std::pair<std::int64_t, std::int64_t>{903, 1003});
  REQUIRE(buckets.bucket(10) == std::pair<std::int64_t, std::int64_t>{0, 3});
  // A "backward" that finishes the arena from its end, in uneven pieces, then leaves [0, 250).
  const GradReady hook = buckets.hook(ctx);
  for (std::int64_t hi = n; hi > 250; hi -= 77) hook(std::max<std::int64_t>(250, hi - 77), hi);
  buckets.finish(ctx);
  CHECK(buckets.last_started_early() == 7);  // buckets [303, 1003) were whole before finish
  for (std::int64_t i = 0; i < n; ++i) REQUIRE(g[i] == want[i]);
  // Reporting a range twice in one step is a caller's bug, refused.
  hook(903, 1003);
  REQUIRE_IREPA_ERROR(hook(903, 1003), "reported twice");
  buckets.finish(ctx);
}

namespace {
using Model = SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, double>;

SiTConfig model_config() {
  SiTConfig c;
  c.input_size = 16, c.in_channels = 1, c.num_classes = 10, c.encoder_depth = 1, c.z_dims = {32};
  c.depth = 2, c.hidden_size = 32, c.num_heads = 2, c.patch_size = 4, c.kernel_size = 3;
  return c;
}
/// 64 random 16x16 grey images (the same on every rank) with labels 0..9.
data::ImageDataset images() {
  Philox g = shared_rng(300);
  Tensor<std::uint8_t> img(Shape{64, 1, 16, 16});
  Tensor<std::int64_t> px(Shape{img.numel()}), labels(Shape{64});
  g.randint(px.view(), 0, 256);
  g.randint(labels.view(), 0, 10);
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(px[i]);
  return data::ImageDataset(std::move(img), std::move(labels));
}
TrainerOptions options(const fs::path& dir, std::int64_t resume = 0) {
  TrainerOptions o;
  o.run_dir = dir.string(), o.resume_step = resume;
  o.batch_size = 8, o.max_train_steps = 20, o.checkpointing_steps = 10, o.log_every = 5, o.quiet = true;
  o.seed = static_cast<std::int64_t>(g_seed % 100000);
  o.schedule = LrSchedule{.kind = LrSchedule::Kind::Constant, .lr = 2e-3};
  o.ema_decays = {0.9};
  o.hflip = true;          // flips are drawn per image too
  o.bucket_mib = 0.05;     // several buckets for this small model (DDP's 25 MiB would be one)
  return o;
}
struct Run {
  TrainResult<double> result;
  std::size_t buckets = 0, overlapped = 0;
};
Run train_run(Communicator<Cpu>& c, const fs::path& dir, std::int64_t resume = 0) {
  CpuContext ctx(1);
  Model m(model_config(), {});
  m.init(g_seed % 1000);
  const auto ds = images();
  const std::vector<TargetEncoder> online = make_target_encoders("hog-x-g4_d32", 16);
  Trainer<Model, SiTObjective> tr(ctx, options(dir, resume), m, SiTObjective{}, nlohmann::json{{"test", "mpi"}}, c);
  Run r;
  r.result = tr.run(ds, online);
  r.buckets = tr.gradient_buckets(), r.overlapped = tr.overlapped_buckets();
  return r;
}
double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }
}  // namespace

TEST_CASE("MPI: 2 processes at global batch B give the 1-process losses at batch B (double, 20 steps), resume on any world size",
          "[mpi][trainer]") {
  const fs::path dir = shared_dir("trainer");
  if (rank() == 0) fs::remove_all(dir);
  barrier();
  const Run two = train_run(comm(), dir / "two");
  REQUIRE(two.result.history.size() == 20);
  CHECK(two.buckets > 2);
  CHECK(two.overlapped > 0);  // buckets summed while the backward still ran
  // A resumed 2-process run is bit-identical to the uninterrupted one.
  if (rank() == 0) {
    fs::create_directories(dir / "two_resumed" / "checkpoints");
    fs::copy_file(dir / "two" / "checkpoints" / "0000010.safetensors", dir / "two_resumed" / "checkpoints" / "0000010.safetensors");
  }
  barrier();
  const Run resumed = train_run(comm(), dir / "two_resumed", 10);
  REQUIRE(resumed.result.history.size() == 10);
  for (std::size_t i = 0; i < 10; ++i) {
    INFO("step " << resumed.result.history[i].step);
    CHECK(resumed.result.history[i].total == two.result.history[i + 10].total);
    CHECK(resumed.result.history[i].grad_norm == two.result.history[i + 10].grad_norm);
  }
  CHECK(same_bits(resumed.result.ema, two.result.ema));
  if (rank() == 0) {
    // Only rank 0 wrote: one log line per step.
    std::ifstream log(dir / "two" / "log.jsonl");
    int lines = 0;
    for (std::string l; std::getline(log, l);) ++lines;
    CHECK(lines == 20);
    // One process at the same global batch: the same losses up to the order of the sums.
    const Run one = train_run(single_process<Cpu>(), dir / "one");
    REQUIRE(one.result.history.size() == 20);
    double worst = 0;
    for (std::size_t i = 0; i < 20; ++i) {
      const auto &a = two.result.history[i], &b = one.result.history[i];
      INFO("step " << b.step << ": 2 ranks " << a.total << ", 1 rank " << b.total);
      for (auto [x, y] : {std::pair{a.total, b.total}, {a.denoising, b.denoising}, {a.alignment, b.alignment}, {a.grad_norm, b.grad_norm}}) {
        CHECK(rel(x, y) <= 1e-6);
        worst = std::max(worst, rel(x, y));
      }
    }
    CHECK(test::rel_error(two.result.ema, one.result.ema) <= 1e-6);
    WARN("2 ranks vs 1 rank, double, 20 steps: worst relative difference " << worst);
    // The 2-process checkpoint resumes on 1 process and continues the 2-process run.
    fs::create_directories(dir / "one_resumed" / "checkpoints");
    fs::copy_file(dir / "two" / "checkpoints" / "0000010.safetensors", dir / "one_resumed" / "checkpoints" / "0000010.safetensors");
    const Run one_resumed = train_run(single_process<Cpu>(), dir / "one_resumed", 10);
    REQUIRE(one_resumed.result.history.size() == 10);
    for (std::size_t i = 0; i < 10; ++i) CHECK(rel(one_resumed.result.history[i].total, two.result.history[i + 10].total) <= 1e-6);
  }
  barrier();
  if (rank() == 0) fs::remove_all(dir);
}

TEST_CASE("MPI: a non-finite loss on one rank stops every rank, naming it", "[mpi][trainer]") {
  const fs::path dir = shared_dir("nan");
  CpuContext ctx(1);
  Model m(model_config(), {});
  m.init(3);
  TrainerOptions o = options(dir);
  o.hflip = false;
  Trainer<Model, SiTObjective> tr(ctx, o, m, SiTObjective{}, nlohmann::json{}, comm());
  const std::int64_t b = o.batch_size / world();
  Tensor<double> x(Shape{b, 1, 16, 16}), z(Shape{b, 16, 32});
  Philox g = shared_rng(400 + static_cast<std::uint64_t>(rank()));
  g.normal(x.view());
  g.normal(z.view());
  if (rank() == 1) x[5] = std::nan("");
  Tensor<std::int64_t> y(Shape{b});
  g.randint(y.view(), 0, 10);
  tr.step(x.cview(), y.view(), {z.cview()});
  REQUIRE_IREPA_ERROR(tr.flush(), "step 1", "not finite", "on rank(s) 1 of 2");
  barrier();
  if (rank() == 0) fs::remove_all(dir);
}

TEST_CASE("MPI: a collective a peer does not join in time fails with the rank named, and no hang", "[mpi]") {
  const CpuContext& ctx = host();
  MpiCommunicator impatient(0.5);
  Tensor<double> x(Shape{16});
  x.fill(1.0);
  if (rank() == 0) {
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE_IREPA_ERROR(impatient.all_reduce_sum(ctx, x.view()), "rank 0 of 2", "did not finish within 0.5 s", "IREPA_COLLECTIVE_TIMEOUT");
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
    // The late peer arrives: the started sum completes.
    for (int tries = 0;; ++tries) {
      try {
        impatient.synchronize(ctx);
        break;
      } catch (const Error&) {
        REQUIRE(tries < 40);
      }
    }
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    impatient.all_reduce_sum(ctx, x.view());
  }
  CHECK(x[0] == 2.0);
  barrier();
}

int main(int argc, char** argv) {
  MpiSession mpi(&argc, &argv);
  int status = 0;
  {
    MpiCommunicator c(120.0);  // a failed REQUIRE on one rank ends the job in minutes, not half an hour
    g_comm = &c;
    std::uint64_t seed = 0;
    if (c.rank() == 0) {
      std::random_device rd;
      seed = (static_cast<std::uint64_t>(rd()) << 32) | rd();
    }
    MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    g_seed = seed;
    if (c.rank() == 0) std::printf("test_mpi: %d processes, seed %llu\n", c.world(), static_cast<unsigned long long>(seed));
    Catch::Session session;
    const int rc = session.run(argc, argv);
    MPI_Allreduce(&rc, &status, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);  // one rank's failure fails the job
    g_comm = nullptr;
  }
  return status;
}
