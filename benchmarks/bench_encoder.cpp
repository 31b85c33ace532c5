// irepa-bench-encoder: a frozen target encoder's forward (preprocessing included), timed after a
// warm-up batch. Random weights of the named architecture (the speed does not depend on them) or
// real ones with --weights. Prints one table row: encoder, batch, threads, median and best batch
// time, images/s.
//
//   irepa-bench-encoder --encoder dinov2-vit-b --batch-size 64
//   irepa-bench-encoder --encoder hog-x-g16_d128 --batch-size 64
//   irepa-bench-encoder --encoder sam2-vit-s --batch-size 8     (also sam-vit-*, vgg-*)
//   irepa-bench-encoder --device cuda --encoder dinov2-vit-b --batch-size 256 --precision bf16 --attention fused
//       (ViT, VGG and HOG encoders on GPU 0, in a CUDA build; the row adds the peak device memory)
//   irepa-bench-encoder --encoder dinov2-vit-b --save-random w/dinov2-vit-b.safetensors
//       (writes random weights of a ViT or VGG under the released names and layout, as a converted
//       checkpoint would be, for runs that need a weights file: scripts/gpu-check.sh)

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "irepa/core/rng.hpp"
#include "irepa/models/target_encoder.hpp"
#if defined(IREPA_WITH_CUDA)
#include "encoder_cuda.hpp"
#include "../examples/fail_safe.hpp"
#endif

namespace {

/// A non-ViT encoder (SAM, SAM2, VGG) with random weights or the given file's.
template <class Enc, class Config>
std::function<irepa::Tensor<float>(irepa::ConstView<float>)> other_encoder(const Config& cfg, const std::string& weights,
                                                                           const irepa::CpuContext& ctx) {
  auto enc = std::make_shared<Enc>(cfg);
  if (!weights.empty()) enc->load(irepa::io::SafeTensorsFile(weights));
  else enc->init_random(1, 0.02f);
  return [enc, &ctx](irepa::ConstView<float> x) { return enc->encode(ctx, x); };
}

}  // namespace

int main(int argc, char** argv) {
  using namespace irepa;
  std::string encoder = "dinov2-vit-b", weights, device = "cpu", precision = "fp32", attention = "materialized", save_random;
  std::int64_t batch = 64, resolution = 256;
  int steps = 3, threads = 0;
  CLI::App app{"irepa-bench-encoder: target encoder forward throughput on the CPU or a GPU"};
  app.add_option("--encoder", encoder, "an encoder name: a ViT (dinov2-vit-b, pe-vit-l, clip-vit-L, siglip2-vit-b, ...), sam-vit-*, sam2-vit-*, vgg-*, or hog-x-g<grid>_d<dim>")->capture_default_str();
  app.add_option("--weights", weights, "converted weights (default: random weights of that shape)");
  app.add_option("--batch-size", batch, "images per batch")->capture_default_str();
  app.add_option("--resolution", resolution, "input images' size (uint8 RGB)")->capture_default_str();
  app.add_option("--steps", steps, "timed batches")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_option("--device", device, "cpu, or cuda (every encoder; needs a CUDA build and a GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  app.add_option("--precision", precision, "cuda: matmul precision fp32, tf32 or bf16 (float accumulation)")
      ->check(CLI::IsMember({"fp32", "tf32", "bf16"}))->capture_default_str();
  app.add_option("--attention", attention, "cuda: materialized or fused attention")
      ->check(CLI::IsMember({"materialized", "fused"}))->capture_default_str();
  app.add_option("--save-random", save_random,
                 "write random weights of --encoder (a ViT or vgg-*) to this .safetensors under the released names, and exit");
  CLI11_PARSE(app, argc, argv);
  try {
    if (!save_random.empty()) {
      if (encoder.starts_with("vgg-")) {
        VggEncoder<float> e(vgg_config_from_name(encoder, resolution));
        Philox(1).normal(e.params().values(), 0.0f, 0.02f);
        io::SafeTensorsWriter w;
        io::add_params(w, e.params());
        w.write(save_random);
      } else {
        write_random_vit_checkpoint(vit_config_from_name(encoder, resolution), save_random, 1, 0.02f);
      }
      std::printf("irepa-bench-encoder: random %s weights written to %s\n", encoder.c_str(), save_random.c_str());
      return 0;
    }
    if (device == "cuda") {
#if defined(IREPA_WITH_CUDA)
      const int n = std::max(steps, 1);
      const auto t = encoder.starts_with("hog-")       ? bench::time_hog_cuda(encoder, batch, resolution, n)
                     : encoder.starts_with("vgg-")     ? bench::time_vgg_cuda(vgg_config_from_name(encoder, resolution), weights, batch,
                                                                              resolution, n, precision)
                     : encoder.starts_with("sam-vit-") ? bench::time_sam_cuda(sam_config_from_name(encoder, resolution), weights, batch,
                                                                              resolution, n, precision)
                     : encoder.starts_with("sam2-vit-")
                         ? bench::time_sam2_cuda(sam2_config_from_name(encoder, resolution), weights, batch, resolution, n, precision)
                         : bench::time_vit_cuda(vit_config_from_name(encoder, resolution), weights, batch, resolution, n, precision,
                                                attention == "fused");
      auto times = t.seconds;
      std::sort(times.begin(), times.end());
      const double med = times[times.size() / 2];
      std::printf("| encoder | device | batch | precision | attention | median batch | best batch | images/s | peak memory |\n"
                  "|---|---|---|---|---|---|---|---|---|\n");
      std::printf("| %s | cuda | %lld | %s | %s | %.4f s | %.4f s | %.1f | %.2f GiB |\n", encoder.c_str(), static_cast<long long>(batch),
                  precision.c_str(), attention.c_str(), med, times.front(), static_cast<double>(batch) / med, t.peak_gib);
      return 0;
#else
      fail("irepa-bench-encoder: --device cuda needs a build with CUDA (nvcc was not found when this was configured)");
#endif
    }
    CpuContext ctx(threads);
    std::function<Tensor<float>(ConstView<float>)> run;
    std::shared_ptr<VitEncoder<float>> vit;
    std::shared_ptr<HogEncoder> hog;
    if (encoder.starts_with("hog-")) {
      hog = std::make_shared<HogEncoder>(encoder, resolution);
      run = [&](ConstView<float> x) { return hog->encode(ctx, x); };
    } else if (encoder.starts_with("sam2-vit-")) {
      run = other_encoder<Sam2Encoder<float>>(sam2_config_from_name(encoder, resolution), weights, ctx);
    } else if (encoder.starts_with("sam-vit-")) {
      run = other_encoder<SamEncoder<float>>(sam_config_from_name(encoder, resolution), weights, ctx);
    } else if (encoder.starts_with("vgg-")) {
      run = other_encoder<VggEncoder<float>>(vgg_config_from_name(encoder, resolution), weights, ctx);
    } else {
      VitConfig cfg = vit_config_from_name(encoder, resolution);
      if (!weights.empty()) {
        io::SafeTensorsFile f(weights);
        cfg.block_chunks = VitEncoder<float>::detect_block_chunks(f, "", cfg.depth);
        vit = std::make_shared<VitEncoder<float>>(cfg);
        vit->load(f);
      } else {
        vit = std::make_shared<VitEncoder<float>>(cfg);
        vit->init_random(1, 0.02f);
      }
      run = [&](ConstView<float> x) { return vit->encode(ctx, x); };
    }
    Tensor<float> images(Shape{batch, 3, resolution, resolution});
    Philox(2).uniform(images.view(), 0.0f, 255.0f);
    run(images);  // warm-up
    std::vector<double> times;
    for (int s = 0; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto out = run(images);
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      IREPA_CHECK(out.size(0) == batch, "bench: encoder returned {} rows", out.size(0));
    }
    std::sort(times.begin(), times.end());
    const double med = times[times.size() / 2];
    std::printf("| encoder | batch | threads | median batch | best batch | images/s |\n|---|---|---|---|---|---|\n");
    std::printf("| %s | %lld | %d | %.3f s | %.3f s | %.1f |\n", encoder.c_str(), static_cast<long long>(batch), ctx.threads(), med,
                times.front(), static_cast<double>(batch) / med);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-bench-encoder: %s\n", e.what());
    return 1;
  }
}
