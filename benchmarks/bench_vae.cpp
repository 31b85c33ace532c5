// irepa-bench-vae: the SD-VAE's encode (images -> mean | std) and decode (latents -> images),
// timed after one warm-up batch of each, in float. VAE_F8D4 with random weights (the speed does
// not depend on them) or real ones with --weights. Prints one table row per part: device, batch,
// resolution, threads or precision, median and best batch time, images/s.
// benchmarks/reference/vae_torch.py prints the same rows for the PyTorch AutoencoderKL.
//
//   irepa-bench-vae --batch-size 4 --resolution 256 --threads 2
//   irepa-bench-vae --device cuda --batch-size 64 --precision tf32     (a CUDA build, GPU 0)
//   irepa-bench-vae --save-random vae.safetensors                      (random VAE_F8D4 weights, for runs without the real ones)

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "irepa/core/rng.hpp"
#include "irepa/models/sd_vae.hpp"
#if defined(IREPA_WITH_CUDA)
#include "vae_cuda.hpp"
#include "../examples/fail_safe.hpp"
#endif

namespace {

void row(const char* part, const char* device, std::int64_t batch, std::int64_t res, const std::string& how, std::vector<double> t) {
  std::sort(t.begin(), t.end());
  const double med = t[t.size() / 2], best = t.front();
  std::printf("| irepa %s | %s | %lld | %lld | %s | %.3f s | %.3f s | %.2f |\n", part, device, static_cast<long long>(batch),
              static_cast<long long>(res), how.c_str(), med, best, static_cast<double>(batch) / med);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace irepa;
  std::string weights, device = "cpu", precision = "fp32", save_random;
  std::int64_t batch = 4, resolution = 256;
  int steps = 3, threads = 0;
  CLI::App app{"irepa-bench-vae: SD-VAE encode and decode throughput on the CPU or a GPU"};
  app.add_option("--weights", weights, "VAE weights (the reference's or diffusers' names; default: random)");
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  app.add_option("--batch-size", batch, "images per batch")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--resolution", resolution, "image side (a multiple of 8)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--steps", steps, "timed batches of each part")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_option("--precision", precision, "GPU matrix products: fp32, tf32 or bf16")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))
      ->capture_default_str();
  app.add_option("--save-random", save_random, "write random VAE_F8D4 weights (the reference's names) to this file and stop");
  CLI11_PARSE(app, argc, argv);
  try {
    const SdVaeConfig cfg = sd_vae_f8d4();
    if (!save_random.empty()) {
      SdVae<float> vae(cfg);
      vae.init_random(1, 0.02f);
      save_sd_vae(vae, save_random);
      std::printf("wrote %s: random VAE_F8D4 weights\n", save_random.c_str());
      return 0;
    }
    IREPA_CHECK(resolution % cfg.factor() == 0, "irepa-bench-vae: --resolution {} is not a multiple of {}", resolution, cfg.factor());
    std::printf("| part | device | batch | resolution | threads / precision | median batch | best batch | images/s |\n"
                "|---|---|---|---|---|---|---|---|\n");
    if (device == "cuda") {
#if defined(IREPA_WITH_CUDA)
      const auto t = bench::time_vae_cuda(cfg, weights, batch, resolution, steps, precision);
      row("encode", "cuda", batch, resolution, precision, t.encode);
      row("decode", "cuda", batch, resolution, precision, t.decode);
      return 0;
#else
      fail("irepa-bench-vae: --device cuda needs a CUDA build (-DIREPA_ENABLE_CUDA=ON)");
#endif
    }
    CpuContext ctx(threads);
    SdVae<float> vae(cfg);
    if (!weights.empty()) vae.load(io::SafeTensorsFile(weights));
    else vae.init_random(1, 0.02f);
    Tensor<float> x(Shape{batch, cfg.in_channels, resolution, resolution});
    Philox(2).uniform(x.view(), -1.0f, 1.0f);
    Tensor<float> z(Shape{batch, cfg.embed_dim, resolution / cfg.factor(), resolution / cfg.factor()});
    Philox(3).normal(z.view(), 0.0f, 1.0f);
    auto time = [&](auto&& f) {
      std::vector<double> out;
      f();
      for (int s = 0; s < steps; ++s) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      return out;
    };
    const std::string th = std::to_string(ctx.threads()) + " threads";
    row("encode", "cpu", batch, resolution, th, time([&] { (void)vae.encode(ctx, x); }));
    row("decode", "cpu", batch, resolution, th, time([&] { (void)vae.decode(ctx, z); }));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-bench-vae: %s\n", e.what());
    return 1;
  }
  return 0;
}
