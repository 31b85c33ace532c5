// irepa-bench-inception: the FID Inception-v3's throughput (uint8 images -> pool_3, sFID
// features, logits), timed after one warm-up batch, in float; what irepa-eval spends its time
// on (a 50k-sample evaluation runs it on the samples and the reference batch). Random weights
// (the speed does not depend on them). Prints one table row: device, batch, input side, threads
// or precision, median and best batch time, images/s. benchmarks/reference/inception_torch.py
// prints the same row for a PyTorch port of the same network.
//
//   irepa-bench-inception --batch-size 16 --resolution 256 --threads 2
//   irepa-bench-inception --device cuda --batch-size 200                 (a CUDA build, GPU 0)

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "../examples/eval_job.hpp"
#include "irepa/core/rng.hpp"
#include "../examples/fail_safe.hpp"

int main(int argc, char** argv) {
  using namespace irepa;
  std::string device = "cpu";
  std::int64_t batch = 16, resolution = 256;
  int steps = 3, threads = 0;
  CLI::App app{"irepa-bench-inception: FID Inception-v3 throughput on the CPU or a GPU"};
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  app.add_option("--batch-size", batch, "images per batch")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--resolution", resolution, "input image side (resized to 299 inside)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--steps", steps, "timed batches")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    InceptionV3<float> host;
    host.init_random(1);
    Tensor<float> images(Shape{batch, resolution, resolution, 3});
    Philox(2).uniform(images.view(), 0.0f, 255.0f);
    std::unique_ptr<examples::InceptionRunner> net;
    std::string how;
    if (device == "cuda") {
#if defined(IREPA_WITH_CUDA)
      net = examples::make_cuda_inception(host, 0);
      how = "fp32";
#else
      fail("irepa-bench-inception: --device cuda needs a CUDA build (-DIREPA_ENABLE_CUDA=ON)");
#endif
    } else {
      struct Cpu final : examples::InceptionRunner {
        Cpu(const InceptionV3<float>& h, int t) : net(InceptionV3<float>::from_host(h)), ctx(t) {}
        examples::InceptionActivations run(const Tensor<float>& x) override { return examples::run_inception(ctx, net, x); }
        std::string where() const override { return "cpu"; }
        InceptionV3<float> net;
        CpuContext ctx;
      };
      auto cpu = std::make_unique<Cpu>(host, threads);
      how = std::to_string(cpu->ctx.threads()) + " threads";
      net = std::move(cpu);
    }
    (void)net->run(images);  // warm-up: allocations, cuBLAS handles
    std::vector<double> t;
    for (int s = 0; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      (void)net->run(images);
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    const double med = t[t.size() / 2];
    std::printf("| implementation | device | batch | input | threads / precision | median batch | best batch | images/s |\n"
                "|---|---|---|---|---|---|---|---|\n");
    std::printf("| irepa inception | %s | %lld | %lld | %s | %.3f s | %.3f s | %.2f |\n", device.c_str(), static_cast<long long>(batch),
                static_cast<long long>(resolution), how.c_str(), med, t.front(), static_cast<double>(batch) / med);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-bench-inception: %s\n", e.what());
    return 1;
  }
  return 0;
}
