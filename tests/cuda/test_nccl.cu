// NCCL between GPU processes (label "cuda"; needs a GPU). Started alone, it runs as one process
// on a machine with one GPU (NCCL refuses two ranks on one device) and, with two or more GPUs,
// starts two copies of itself with torchrun's variables, so the NCCL id goes over the TCP
// rendezvous (no MPI needed on the GPU machine). Checks: sums, broadcast and gather against the
// host; gradient buckets over a device arena; a SiT trained through the NCCL communicator
// against the one-process trainer; and the all-reduce time at SiT-B/2 and SiT-XL/2 sizes.

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "irepa/align/head.hpp"
#include "irepa/data/fashion_mnist.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/train/nccl_communicator.cuh"
#include "irepa/train/trainer.hpp"

using namespace irepa;

namespace {
using Model = SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float, Cuda>;

data::ImageDataset images(std::uint64_t seed) {
  Philox g(seed, 300);
  Tensor<std::uint8_t> img(Shape{64, 1, 16, 16});
  Tensor<std::int64_t> px(Shape{img.numel()}), labels(Shape{64});
  g.randint(px.view(), 0, 256);
  g.randint(labels.view(), 0, 10);
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(px[i]);
  return data::ImageDataset(std::move(img), std::move(labels));
}

TrainResult<float> train_run(const CudaContext& ctx, Communicator<Cuda>& comm, const std::string& dir, std::uint64_t seed) {
  SiTConfig c;
  c.input_size = 16, c.in_channels = 1, c.num_classes = 10, c.encoder_depth = 1, c.z_dims = {};
  c.depth = 2, c.hidden_size = 64, c.num_heads = 2, c.patch_size = 2, c.kernel_size = 3;
  Model m(c, {});
  m.init(seed);
  TrainerOptions o;
  o.run_dir = dir, o.batch_size = 16, o.max_train_steps = 10, o.checkpointing_steps = 100, o.log_every = 5, o.quiet = true;
  o.seed = static_cast<std::int64_t>(seed % 1000), o.bucket_mib = 0.1;
  o.schedule = LrSchedule{.kind = LrSchedule::Kind::Constant, .lr = 1e-3};
  return train(ctx, o, m, SiTObjective{}, images(seed), {}, nlohmann::json::object(), comm);
}

int worker(const LaunchInfo& l, std::uint64_t seed) {
  CudaContext ctx(l.local_rank);
  NcclCommunicator comm(ctx, l, 120.0);
  const int W = comm.world(), R = comm.rank();
  std::printf("rank %d: %s on cuda:%d\n", R, comm.describe().c_str(), l.local_rank);
  // Sums, broadcast, gather.
  for (std::int64_t n : {std::int64_t{1}, std::int64_t{4099}, std::int64_t{1} << 20}) {
    std::vector<Tensor<float>> parts;
    Tensor<float> want(Shape{n});
    for (int r = 0; r < W; ++r) {
      Tensor<float> t(Shape{n});
      Philox g(seed, 100 + static_cast<std::uint64_t>(r));
      g.uniform(t.view(), -1.0f, 1.0f);
      for (std::int64_t i = 0; i < n; ++i) want[i] = r == 0 ? t[i] : want[i] + t[i];
      parts.push_back(std::move(t));
    }
    Tensor<float, Cuda> x = to_device(ctx, parts[static_cast<std::size_t>(R)].cview());
    comm.all_reduce_sum(ctx, x.view());
    const Tensor<float> got = to_host<float>(ctx, x.cview());
    double err = 0;
    for (std::int64_t i = 0; i < n; ++i) err = std::max(err, std::abs(static_cast<double>(got[i]) - want[i]));
    IREPA_CUDA_EXPECT(err <= 1e-6, "all-reduce of %lld floats: max error %g", static_cast<long long>(n), err);
    Tensor<std::int64_t> ids(Shape{n});
    for (std::int64_t i = 0; i < n; ++i) ids[i] = R == W - 1 ? 3 * i + 1 : -1;
    Tensor<std::int64_t, Cuda> di = to_device(ctx, ids.cview());
    comm.broadcast(ctx, di.view(), W - 1);
    const Tensor<std::int64_t> bi = to_host<std::int64_t>(ctx, di.cview());
    std::int64_t wrong = 0;
    for (std::int64_t i = 0; i < n; ++i) wrong += bi[i] != 3 * i + 1;
    IREPA_CUDA_EXPECT(wrong == 0, "broadcast: %lld wrong", static_cast<long long>(wrong));
  }
  const auto gathered = comm.all_gather(ctx, 10 * R + 7);
  for (int r = 0; r < W; ++r) IREPA_CUDA_EXPECT(gathered[static_cast<std::size_t>(r)] == 10 * r + 7, "all_gather[%d]", r);
  // Buckets over a device arena, started from reported ranges.
  {
    const std::int64_t n = 100003;
    Tensor<float> h(Shape{n});
    Philox g(seed, 200 + static_cast<std::uint64_t>(R));
    g.uniform(h.view());
    Tensor<float, Cuda> d = to_device(ctx, h.cview());
    GradientBuckets<float, Cuda> b(comm, d.view(), 10000);
    const GradReady hook = b.hook(ctx);
    if (hook)
      for (std::int64_t hi = n; hi > 30000; hi -= 7777) hook(std::max<std::int64_t>(30000, hi - 7777), hi);
    b.finish(ctx);
    comm.synchronize(ctx);
    const Tensor<float> got = to_host<float>(ctx, d.cview());
    double err = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      double want = 0;
      for (int r = 0; r < W; ++r) {
        Philox gr(seed, 200 + static_cast<std::uint64_t>(r));
        gr.set_position(static_cast<std::uint64_t>(i / 4));
        Tensor<float> four(Shape{4});
        gr.uniform(four.view());
        want += four[i % 4];
      }
      err = std::max(err, std::abs(got[i] - want));
    }
    IREPA_CUDA_EXPECT(err <= 1e-6, "bucketed all-reduce: max error %g", err);
  }
  // The trainer through NCCL against one process at the same global batch.
  const std::string dir = "/tmp/irepa_nccl_" + std::to_string(seed);
  const TrainResult<float> dp = train_run(ctx, comm, dir + "_dp", seed);
  if (R == 0) {
    const TrainResult<float> one = train_run(ctx, single_process<Cuda>(), dir + "_one", seed);
    double worst = 0;
    for (std::size_t i = 0; i < one.history.size(); ++i)
      worst = std::max(worst, std::abs(dp.history[i].total - one.history[i].total) / std::abs(one.history[i].total));
    IREPA_CUDA_EXPECT(dp.history.size() == 10 && worst <= 1e-5, "trainer over NCCL vs one process: worst relative loss difference %g",
                      worst);
    std::printf("trainer, %d NCCL process(es) vs one: worst relative loss difference %.3g over 10 steps\n", W, worst);
  }
  (void)comm.all_gather(ctx, 0);
  // All-reduce time per step at the models' gradient sizes (float).
  for (const auto& [name, params] : {std::pair{"SiT-B/2", std::int64_t{130'000'000}}, std::pair{"SiT-XL/2", std::int64_t{675'000'000}}}) {
    Tensor<float, Cuda> g(Shape{params});
    fill(ctx, g.view(), 1.0f / static_cast<float>(W));
    comm.all_reduce_sum(ctx, g.view());
    comm.synchronize(ctx);
    const auto t0 = std::chrono::steady_clock::now();
    const int reps = 5;
    for (int k = 0; k < reps; ++k) comm.all_reduce_sum(ctx, g.view());
    comm.synchronize(ctx);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    const double bytes = 4.0 * static_cast<double>(params);
    if (R == 0)
      std::printf("all-reduce %s gradients (%.0f MB float), %d process(es): %.2f ms, bus bandwidth %.1f GB/s\n", name, bytes / 1e6, W,
                  1e3 * s, W > 1 ? 2.0 * (W - 1) / W * bytes / s / 1e9 : 0.0);
  }
  return cuda_test::finish(("test_nccl rank " + std::to_string(R)).c_str());
}
}  // namespace

int main(int argc, char** argv) {
  if (!cuda_test::have_device()) return 1;
  try {
    if (std::getenv("WORLD_SIZE")) {
      const char* s = std::getenv("IREPA_TEST_SEED");
      return worker(LaunchInfo::from_env(), s ? std::stoull(s) : 1);
    }
    std::random_device rd;
    const std::uint64_t seed = (static_cast<std::uint64_t>(rd()) << 32) | rd();
    int gpus = 0;
    cudaGetDeviceCount(&gpus);
    const int world = std::min(gpus, 2);
    std::printf("test_nccl: %d GPU(s), %d process(es), seed %llu\n", gpus, world, static_cast<unsigned long long>(seed));
    if (world < 2) return worker(LaunchInfo{}, seed);
    const int port = 20000 + static_cast<int>(seed % 20000);
    std::vector<pid_t> kids;
    for (int r = 0; r < world; ++r) {
      const pid_t p = fork();
      if (p == 0) {
        setenv("RANK", std::to_string(r).c_str(), 1), setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
        setenv("WORLD_SIZE", std::to_string(world).c_str(), 1), setenv("LOCAL_WORLD_SIZE", std::to_string(world).c_str(), 1);
        setenv("MASTER_ADDR", "127.0.0.1", 1), setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
        setenv("IREPA_TEST_SEED", std::to_string(seed).c_str(), 1);
        execv("/proc/self/exe", argv);
        _exit(127);
      }
      kids.push_back(p);
    }
    int status = 0;
    for (pid_t p : kids) {
      int st = 0;
      waitpid(p, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) status = 1;
    }
    std::printf("test_nccl: %s\n", status ? "FAILED" : "ok");
    return status;
  } catch (const std::exception& e) {
    std::printf("test_nccl: %s\n", e.what());
    return 1;
  }
  (void)argc;
}
