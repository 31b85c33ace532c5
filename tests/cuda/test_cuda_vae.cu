// The SD-VAE on the GPU: its ops (general conv, GroupNorm + SiLU, nearest upsampling, the
// layouts, the latent arithmetic) against the CPU double path on fresh random inputs, then the
// whole VAE (a small one and VAE_F8D4's full width at 64 px) in double, float (<= 1e-5) and float
// with bf16 products (<= 2e-2) against the CPU double forward, then the golden file on the GPU
// when a folder given on the command line (or ../shared/golden) has it.
//
//   test_cuda_vae [golden-folder...]

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "cuda_test_support.hpp"
#include "golden/vae.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/sd_vae.hpp"
#include "irepa/ops/cuda/tensor_ops.cuh"
#include "vae_reference.hpp"

using namespace irepa;

namespace {

using cuda_test::rng, cuda_test::randn, cuda_test::up, cuda_test::rel;

template <class T>
void check_ops(const CudaContext& ctx, double tol, const char* label) {
  struct Case {
    std::int64_t B, H, W, Ci, Co, k;
    ops::Conv2dSpec s;
  };
  for (const Case& c : {Case{2, 9, 7, 5, 6, 3, ops::Conv2dSpec::same(3)}, Case{2, 8, 8, 12, 7, 1, ops::Conv2dSpec{}},
                        Case{2, 16, 12, 8, 8, 3, ops::Conv2dSpec::pad_after_stride2()},
                        Case{1, 64, 64, 512, 4, 3, ops::Conv2dSpec::same(3)}}) {  // 4096 x 4608 columns: more than one block on the GPU
    const auto x = randn(Shape{c.B, c.H, c.W, c.Ci}), w = randn(Shape{c.Co, c.Ci, c.k, c.k}, 0.2), b = randn(Shape{c.Co});
    const auto want = vae_ref::conv2d(x, w, b, c.s);
    Tensor<T, Cuda> y(want.shape());
    ops::conv2d_forward<T>(ctx, up<T>(ctx, x).cview(), up<T>(ctx, w).cview(), up<T>(ctx, b).cview(), c.s, y.view());
    const double e = rel<T>(ctx, y.cview(), want);
    IREPA_CUDA_EXPECT(e <= tol, "conv2d_forward %s (k %lld, stride %lld, Ci %lld): relative error %.3g", label, (long long)c.k,
                      (long long)c.s.stride, (long long)c.Ci, e);
  }
  for (const bool silu : {false, true}) {
    auto x = randn(Shape{3, 6, 5, 64}, 2.0);
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] += 1.5;
    const auto w = randn(Shape{64}), b = randn(Shape{64});
    const auto want = vae_ref::group_norm(x, 32, 1e-6, w, b, silu);
    Tensor<T, Cuda> y(x.shape());
    ops::group_norm_forward<T>(ctx, up<T>(ctx, x).cview(), 32, T(1e-6), up<T>(ctx, w).cview(), up<T>(ctx, b).cview(), silu, y.view());
    const double e = rel<T>(ctx, y.cview(), want);
    IREPA_CUDA_EXPECT(e <= tol, "group_norm_forward %s (silu %d): relative error %.3g", label, silu, e);
  }
  const auto x = randn(Shape{2, 5, 3, 7});
  Tensor<T, Cuda> u(Shape{2, 10, 6, 7}), f(Shape{2, 7, 5, 3});
  ops::upsample_nearest2x<T>(ctx, up<T>(ctx, x).cview(), u.view());
  ops::channels_first<T>(ctx, up<T>(ctx, x).cview(), f.view());
  IREPA_CUDA_EXPECT(rel<T>(ctx, u.cview(), vae_ref::upsample2x(x)) <= tol, "upsample_nearest2x %s", label);
  IREPA_CUDA_EXPECT(rel<T>(ctx, f.cview(), vae_ref::channels_first(x)) <= tol, "channels_first %s", label);
  // The latent arithmetic against its formula on the host.
  const std::int64_t B = 2, E = 4, P = 6;
  auto moments = randn(Shape{B, 2 * E, 2, 3}, 20.0);
  const auto eps = randn(Shape{B, E, 2, 3}), scale = randn(Shape{E}, 0.1), bias = randn(Shape{E});
  Tensor<T, Cuda> ms(moments.shape()), lv(eps.shape()), z(eps.shape()), un(eps.shape());
  ops::posterior_from_moments<T>(ctx, up<T>(ctx, moments).cview(), T(-30), T(20), ms.view(), lv.view());
  ops::sample_posterior<T>(ctx, ms.cview(), up<T>(ctx, eps).cview(), up<T>(ctx, scale).cview(), up<T>(ctx, bias).cview(), z.view());
  ops::unscale_latents<T>(ctx, z.cview(), up<T>(ctx, scale).cview(), up<T>(ctx, bias).cview(), un.view());
  Tensor<double> want_z(eps.shape()), want_un(eps.shape());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t c = 0; c < E; ++c)
      for (std::int64_t p = 0; p < P; ++p) {
        const double m = moments[(b * 2 * E + c) * P + p], l = std::clamp(moments[(b * 2 * E + E + c) * P + p], -30.0, 20.0);
        const double v = m + std::exp(0.5 * l) * eps[(b * E + c) * P + p];
        want_z[(b * E + c) * P + p] = (v - bias[c]) * scale[c], want_un[(b * E + c) * P + p] = v;
      }
  IREPA_CUDA_EXPECT(rel<T>(ctx, z.cview(), want_z) <= tol, "sample_posterior %s", label);
  IREPA_CUDA_EXPECT(rel<T>(ctx, un.cview(), want_un) <= 10 * tol, "unscale_latents %s", label);
}

/// A VAE of cfg with random weights on the GPU (double, float, float + bf16 products) against
/// the CPU double forward of the same weights (written to a file both read).
void check_model(CudaContext& ctx, const SdVaeConfig& cfg, std::int64_t side, const char* label) {
  const auto path = (std::filesystem::temp_directory_path() / ("irepa_cuda_vae_" + std::to_string(::getpid()) + ".safetensors")).string();
  {
    SdVae<double> host(cfg);
    host.init_random(rng().seed() ^ 0x5eed, 0.05);
    io::SafeTensorsWriter w;
    host.params().for_each([&](std::string_view n, TensorView<double> v, TensorView<double>) { w.add<double>(n, v); });
    w.write(path);
  }
  Tensor<double> x(Shape{2, 3, side, side});
  rng().uniform(x.view(), -1.0, 1.0);
  const auto z = randn(Shape{2, cfg.embed_dim, side / cfg.factor(), side / cfg.factor()});
  Tensor<double> want_m, want_d;
  vae_ref::vae(cfg, path, x, z, want_m, want_d);
  const io::SafeTensorsFile f(path);
  auto run = [&]<class T>(T*, MatmulPrecision p, double tol, const char* what) {
    ctx.set_matmul_precision(p);
    SdVae<T, Cuda> m(cfg);
    m.load(f);
    const double em = rel<T>(ctx, m.encode_moments(ctx, up<T>(ctx, x).cview()).cview(), want_m);
    const double ed = rel<T>(ctx, m.decode(ctx, up<T>(ctx, z).cview()).cview(), want_d);
    IREPA_CUDA_EXPECT(em <= tol && ed <= tol, "VAE %s in %s: moments %.3g, decoded %.3g (tolerance %.0e)", label, what, em, ed, tol);
    std::printf("VAE %-28s on the GPU in %-12s moments %.2g, decoded %.2g against the CPU in double\n", label, what, em, ed);
  };
  run(static_cast<double*>(nullptr), MatmulPrecision::fp32, 1e-12, "double");
  run(static_cast<float*>(nullptr), MatmulPrecision::fp32, 1e-5, "float");
  run(static_cast<float*>(nullptr), MatmulPrecision::bf16, 2e-2, "float+bf16");
  ctx.set_matmul_precision(MatmulPrecision::fp32);
  std::filesystem::remove(path);
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda_test::have_device()) return 1;
  std::vector<std::filesystem::path> dirs;
  for (int i = 1; i < argc; ++i) dirs.emplace_back(argv[i]);
  if (dirs.empty()) dirs = {IREPA_GOLDEN_DIR};
  try {
    CudaContext ctx;
    check_ops<double>(ctx, 1e-13, "double");
    check_ops<float>(ctx, 1e-5, "float");
    SdVaeConfig small;
    small.ch = 32, small.ch_mult = {1, 2, 2}, small.num_res_blocks = 1, small.resolution = 32, small.attn_resolutions = {16};
    check_model(ctx, small, 16, "ch 32, attention at 16");
    check_model(ctx, sd_vae_f8d4(), 64, "VAE_F8D4 (ch 128) at 64 px");
    bool golden = false;
    for (const auto& d : dirs) {
      const auto p = d / "vae_f8d4_ch32.safetensors";
      if (!std::filesystem::exists(p)) continue;
      const io::SafeTensorsFile f(p.string());
      for (const auto& [tol, is_double] : {std::pair{1e-9, true}, std::pair{1e-4, false}}) {
        const auto rows = is_double ? golden::check_sd_vae<double>(f, tol, ctx) : golden::check_sd_vae<float>(f, tol, ctx);
        for (const auto& r : rows)
          IREPA_CUDA_EXPECT(r.ok(), "golden vae (%s): %s %.3g (tolerance %.0e)", is_double ? "double" : "float", r.name.c_str(), r.rel, r.tol);
        std::printf("golden vae_f8d4_ch32 on the GPU in %s: %zu tensors compared\n", is_double ? "double" : "float", rows.size());
      }
      golden = true;
      break;
    }
    if (!golden) std::printf("vae_f8d4_ch32.safetensors not in the folders given: the golden file is checked on the CPU only\n");
  } catch (const std::exception& e) {
    std::printf("FAILED with an exception: %s\n", e.what());
    return 1;
  }
  return cuda_test::finish("cuda_vae");
}
