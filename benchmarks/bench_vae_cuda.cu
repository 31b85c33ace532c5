#include <chrono>

#include "vae_cuda.hpp"

namespace bench {

VaeTiming time_vae_cuda(const irepa::SdVaeConfig& cfg, const std::string& weights, std::int64_t batch, std::int64_t resolution,
                        int steps, const std::string& precision) {
  using namespace irepa;
  CudaContext ctx;
  ctx.set_matmul_precision(parse_matmul_precision(precision));
  SdVae<float, Cuda> vae(cfg);
  if (!weights.empty()) vae.load(io::SafeTensorsFile(weights));
  else vae.init_random(1, 0.02f);
  Tensor<float> x(Shape{batch, cfg.in_channels, resolution, resolution});
  Philox(2).uniform(x.view(), -1.0f, 1.0f);
  const auto xd = to_device(ctx, x.cview());
  Tensor<float> z(Shape{batch, cfg.embed_dim, resolution / cfg.factor(), resolution / cfg.factor()});
  Philox(3).normal(z.view(), 0.0f, 1.0f);
  const auto zd = to_device(ctx, z.cview());
  VaeTiming t;
  auto time = [&](auto&& f, std::vector<double>& out) {
    f();
    ctx.synchronize();
    for (int s = 0; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      ctx.synchronize();
      out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  };
  time([&] { (void)vae.encode(ctx, xd.cview()); }, t.encode);
  time([&] { (void)vae.decode(ctx, zd.cview()); }, t.decode);
  return t;
}

}  // namespace bench
