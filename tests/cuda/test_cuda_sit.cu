// The whole SiT on the GPU (label "cuda"; needs a GPU): a SiT-B/2 iREPA step (3x3 conv
// projector, SpatialNorm, after block 4) with random parameters and inputs, against the CPU:
// the losses, the model output, the projected tokens and every parameter's gradient. The CPU
// runs the step in double (the truth) and in float; the GPU's float error against double must
// be within a small factor of the CPU float path's own (the two differ only in summation order),
// so the bound adapts to the model's depth instead of a guessed constant. Then clip + AdamW + EMA
// on the GPU against AdamW<float>::step on the CPU from the same gradients. Inputs are fresh
// random draws each run; the seed is printed (IREPA_TEST_SEED replays).
// Then the trainer on the GPU (train_sit with the model, AdamW and EMA there) on small image
// shards: each step's loss against the CPU run's, and a run resumed from its step-10 checkpoint
// ending bit-identical to the one that went straight through (sample grids, drawn on the GPU, too);
// and a run whose online ViT target runs on the GPU, against the same run on the CPU.
// A trainer step on the GPU moves nothing between host and device but its batch going up, and a
// flush only the logged scalars coming back (the context's transfer bytes are counted).
// Last, every SiT and JiT golden file (../shared/golden and tests/data/golden, or the folders
// named on the command line) runs in float on the GPU: outputs, losses and every gradient
// within 1e-4 of the reference's float64 values, the bound the CPU float path is held to; and
// the sampler file's runs, with the sampler's state on the GPU.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "cuda_test_support.hpp"
#include "golden/objectives.hpp"
#include "irepa/data/shards.hpp"
#include "golden/samplers.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/train/optim.hpp"
#include "irepa/train/trainer.hpp"
#include "sit_reference.hpp"

using namespace irepa;

namespace {

double rel(ConstView<double> got, ConstView<double> want, std::int64_t begin = 0, std::int64_t end = -1) {
  if (end < 0) end = want.numel();
  double d = 0, n = 0;
  for (std::int64_t i = begin; i < end; ++i) {
    const double a = got.data()[i], b = want.data()[i];
    d += (a - b) * (a - b);
    n += b * b;
  }
  return n > 0 ? std::sqrt(d / n) : std::sqrt(d);
}

Tensor<double> widen(ConstView<float> x) {
  Tensor<double> y(x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) y[i] = x.data()[i];
  return y;
}

/// The GPU's error may be at most this many times the CPU float path's, plus a floor for
/// values the float path happens to get (nearly) exact.
constexpr double kFactor = 4.0, kFloor = 2e-6;

void expect_close(const char* what, double gpu_err, double cpu_err) {
  const double bound = kFactor * cpu_err + kFloor;
  IREPA_CUDA_EXPECT(gpu_err <= bound, "%s: GPU float error %.3g against double, bound %.3g (CPU float %.3g)", what, gpu_err, bound,
                    cpu_err);
}

}  // namespace

/// Every sit_*.safetensors and jit_*.safetensors golden file in dir (objective: outputs, losses,
/// every gradient), in float on the GPU; returns how many ran.
int golden_files(const CudaContext& ctx, const std::filesystem::path& dir) {
  int n = 0;
  if (!std::filesystem::is_directory(dir)) return 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    const bool jit = name.starts_with("jit_");
    if (!(name.starts_with("sit_") || jit) || e.path().extension() != ".safetensors" || name.find("sampler") != std::string::npos)
      continue;
    io::SafeTensorsFile f(e.path().string());
    if (f.metadata("model") != std::optional<std::string>(jit ? "JiT" : "SiT")) continue;
    const auto rows = jit ? golden::check_jit_on<float>(f, 1e-4, ctx) : golden::check_sit_on<float>(f, 1e-4, ctx);
    double worst = 0;
    for (const auto& r : rows) {
      IREPA_CUDA_EXPECT(r.ok(), "golden %s: %s relative error %.3g (tolerance %.0e)", name.c_str(), r.name.c_str(), r.rel, r.tol);
      worst = std::max(worst, r.rel);
    }
    IREPA_CUDA_EXPECT(rows.size() > 10, "golden %s: only %zu rows compared", name.c_str(), rows.size());
    std::printf("golden %s on the GPU in float: %zu tensors, largest relative error %.2g\n", name.c_str(), rows.size(), worst);
    ++n;
  }
  return n;
}

int main(int argc, char** argv) {
  if (!cuda_test::have_device()) return 1;
  const char* s = std::getenv("IREPA_TEST_SEED");
  const std::uint64_t seed =
      s ? std::strtoull(s, nullptr, 10) : static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  std::printf("seed %llu (IREPA_TEST_SEED replays)\n", static_cast<unsigned long long>(seed));
  CudaContext ctx;

  sit_ref::Case c;
  apply_model_name(c.cfg, "SiT-B/2");
  c.cfg.input_size = 32, c.cfg.in_channels = 4, c.cfg.num_classes = 1000, c.cfg.encoder_depth = 4, c.cfg.z_dims = {768};
  c.cfg.kernel_size = 3;
  const std::int64_t B = 3, T = 256;
  using Model = SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float, Cuda>;
  Model m(c.cfg);

  // Random parameters (not the adaLN-Zero init, under which most gradients vanish).
  Philox rng(seed, 7);
  c.params = Tensor<float>(Shape{m.num_params()});
  rng.normal(c.params.view(), 0.0f, 0.03f);
  m.copy_params_from([&] {
    Model::HostModel h(c.cfg);
    h.params().values().copy_from(c.params.cview());
    return h;
  }());
  c.x = Tensor<float>(Shape{B, 4, 32, 32});
  c.noise = Tensor<float>(c.x.shape());
  c.t = Tensor<float>(Shape{B});
  c.z = Tensor<float>(Shape{B, T, 768});
  rng.normal(c.x.view());
  rng.normal(c.noise.view());
  rng.uniform(c.t.view(), 0.0f, 1.0f);
  rng.normal(c.z.view(), 0.5f, 2.0f);  // a mean for SpatialNorm to remove
  c.y = Tensor<std::int64_t>(Shape{B});
  rng.randint(c.y.view(), 0, 1001);  // 1000: the null class

  const auto batch = upload_batch(ctx, HostBatch<float>{c.x, c.y, {c.z.cview()}}, m.label_rows());
  const auto t_dev = to_device(ctx, c.t.cview()), noise_dev = to_device(ctx, c.noise.cview());
  auto step = [&] { return objective_step(ctx, m, SiTObjective{}, batch, t_dev.cview(), noise_dev.cview()); };
  const auto t0 = std::chrono::steady_clock::now();
  const auto sc = step();
  const StepLosses st = sc.losses(ctx);
  const Tensor<float> grads = to_host<float>(ctx, m.params().grads());
  const double gpu_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto ref = sit_ref::run(c, true);
  const auto cpu = sit_ref::run(c, false);
  std::printf("step: GPU %.2f s (first call, with set-up); loss %.9g (double %.12g, CPU float %.9g)\n", gpu_s, st.total, ref.total,
              cpu.total);

  auto scalar_err = [](double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); };
  expect_close("total loss", scalar_err(st.total, ref.total), scalar_err(cpu.total, ref.total));
  expect_close("denoising loss", scalar_err(st.denoising, ref.denoising), scalar_err(cpu.denoising, ref.denoising));
  expect_close("alignment loss", scalar_err(st.alignment, ref.alignment), scalar_err(cpu.alignment, ref.alignment));
  {
    const auto out = widen(to_host(ctx, sc.cache.output()).cview());
    const auto zhat = widen(to_host(ctx, sc.cache.projected(0)).cview());
    expect_close("model output", rel(out, ref.out), rel(cpu.out, ref.out));
    expect_close("projected tokens", rel(zhat, ref.zhat), rel(cpu.zhat, ref.zhat));
  }
  const auto g = widen(grads.cview());
  double worst = 0;
  std::string worst_name;
  for (std::size_t i = 0; i < ref.names.size(); ++i) {
    const std::int64_t b = ref.offsets[i], e = i + 1 < ref.offsets.size() ? ref.offsets[i + 1] : g.numel();
    const double eg = rel(g, ref.grads, b, e), ec = rel(cpu.grads, ref.grads, b, e);
    expect_close(("grad " + ref.names[i]).c_str(), eg, ec);
    if (eg > worst) worst = eg, worst_name = ref.names[i];
  }
  std::printf("%zu parameter gradients; the largest GPU error against double: %.3g (%s)\n", ref.names.size(), worst,
              worst_name.c_str());
  expect_close("all gradients", rel(g, ref.grads), rel(cpu.grads, ref.grads));

  // The same step with the products on the tensor cores (float storage, FP32 accumulation):
  // bf16 inputs within 2e-2 relative of double, TF32 inputs within 5e-3, per tensor.
  for (const auto& [precision, tol] : {std::pair{MatmulPrecision::bf16, 2e-2}, std::pair{MatmulPrecision::tf32, 5e-3}}) {
    ctx.set_matmul_precision(precision);
    fill(ctx, m.params().grads(), 0.0f);
    const auto spc = step();
    const StepLosses sp = spc.losses(ctx);
    const auto gp = widen(to_host<float>(ctx, m.params().grads()).cview());
    const std::string p(to_string(precision));
    auto expect_within = [&](const std::string& what, double err) {
      IREPA_CUDA_EXPECT(err <= tol, "%s products: %s relative error %.3g against double (tolerance %.0e)", p.c_str(), what.c_str(),
                        err, tol);
    };
    expect_within("total loss", scalar_err(sp.total, ref.total));
    expect_within("denoising loss", scalar_err(sp.denoising, ref.denoising));
    expect_within("alignment loss", scalar_err(sp.alignment, ref.alignment));
    expect_within("model output", rel(widen(to_host(ctx, spc.cache.output()).cview()), ref.out));
    double worst_p = 0;
    for (std::size_t i = 0; i < ref.names.size(); ++i) {
      const std::int64_t b = ref.offsets[i], e = i + 1 < ref.offsets.size() ? ref.offsets[i + 1] : gp.numel();
      const double err = rel(gp, ref.grads, b, e);
      expect_within("grad " + ref.names[i], err);
      worst_p = std::max(worst_p, err);
    }
    std::printf("%s products: loss %.6g (double %.6g); largest gradient error %.3g\n", p.c_str(), sp.total, ref.total, worst_p);
  }
  ctx.set_matmul_precision(MatmulPrecision::fp32);
  {  // the fused attention kernels: still float32 throughout, so the float bound holds
    ctx.set_fused_attention(true);
    fill(ctx, m.params().grads(), 0.0f);
    const auto sfc = step();
    const StepLosses sf = sfc.losses(ctx);
    const auto gf = widen(to_host<float>(ctx, m.params().grads()).cview());
    expect_close("fused attention: total loss", scalar_err(sf.total, ref.total), scalar_err(cpu.total, ref.total));
    expect_close("fused attention: model output", rel(widen(to_host(ctx, sfc.cache.output()).cview()), ref.out), rel(cpu.out, ref.out));
    for (std::size_t i = 0; i < ref.names.size(); ++i) {
      const std::int64_t b = ref.offsets[i], e = i + 1 < ref.offsets.size() ? ref.offsets[i + 1] : gf.numel();
      expect_close(("fused attention: grad " + ref.names[i]).c_str(), rel(gf, ref.grads, b, e), rel(cpu.grads, ref.grads, b, e));
    }
    std::printf("fused attention: loss %.9g, all gradients %.3g from double\n", sf.total, rel(gf, ref.grads));
    ctx.set_fused_attention(false);
  }
  ctx.synchronize();
  Cuda::upload_sync(m.params().grads().data(), grads.data(), sizeof(float) * static_cast<std::size_t>(grads.numel()));  // the FP32 ones

  // Clip + AdamW + EMA on the GPU against the CPU optimizer from the same (GPU) gradients.
  {
    AdamW<float, Cuda> opt(m.params(), AdamWOptions{.lr = 1e-4, .weight_decay = 0.01, .decay = decay_weights_only});
    Ema<float, Cuda> ema(m.params(), 0.9999);
    const double gn = grad_norm(ctx, m.params());
    double gn_ref = 0;
    for (std::int64_t i = 0; i < grads.numel(); ++i) gn_ref += static_cast<double>(grads[i]) * grads[i];
    gn_ref = std::sqrt(gn_ref);
    IREPA_CUDA_EXPECT(std::abs(gn - gn_ref) <= 1e-12 * gn_ref, "grad norm %.15g, summed on the host %.15g", gn, gn_ref);
    const double clip = clip_coefficient(gn, 1.0);
    opt.step(ctx, m.params(), 1e-4, clip, {&ema}, 1);
    Tensor<float> p = Tensor<float>::copy_of(c.params.cview()), e = Tensor<float>::copy_of(c.params.cview());
    sit_ref::adamw_step(c.cfg, p, grads, e, clip);
    const auto pg = widen(to_host<float>(ctx, m.params().values()).cview()), eg = widen(to_host<float>(ctx, ema.values()).cview());
    const double ep = rel(pg, widen(p.cview())), ee = rel(eg, widen(e.cview()));
    IREPA_CUDA_EXPECT(ep <= 1e-7 && ee <= 1e-7, "AdamW + EMA step: parameters %.3g, EMA %.3g from the CPU step", ep, ee);
    std::printf("grad norm %.6g (clip %.4g); AdamW step against the CPU: %.2g, EMA %.2g\n", gn, clip, ep, ee);
  }

  // A trainer step moves only its batch up; a flush brings back only the logged scalars.
  {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("irepa_cuda_transfers_" + std::to_string(seed));
    TrainerOptions o;
    o.run_dir = dir.string(), o.batch_size = B, o.max_train_steps = 10, o.log_every = 10, o.quiet = true;
    Trainer<Model, SiTObjective> trainer(ctx, o, m, SiTObjective{.proj_coeff = 1.0}, nlohmann::json::object());
    const std::int64_t batch_bytes = c.x.numel() * 4 + c.y.numel() * 8 + c.z.numel() * 4;
    for (int s = 0; s < 3; ++s) {
      Tensor<std::int64_t> labels = c.y.clone();
      ctx.synchronize();
      ctx.reset_transfers();
      trainer.step(c.x.cview(), labels.view(), {c.z.cview()});
      ctx.synchronize();
      const TransferStats t = ctx.transfers();
      IREPA_CUDA_EXPECT(t.uploads == 3 && t.upload_bytes == batch_bytes && t.downloads == 0 && t.download_bytes == 0,
                        "trainer step %d: %lld uploads of %lld bytes (the batch is 3 of %lld), %lld downloads of %lld bytes (expected none)",
                        s + 1, static_cast<long long>(t.uploads), static_cast<long long>(t.upload_bytes), static_cast<long long>(batch_bytes),
                        static_cast<long long>(t.downloads), static_cast<long long>(t.download_bytes));
    }
    ctx.reset_transfers();
    trainer.flush();
    const TransferStats f = ctx.transfers();
    using Steps = Trainer<Model, SiTObjective>;
    const std::int64_t flush_bytes = 3 * Steps::kLogColumns * 8;  // 3 steps of 4 doubles
    IREPA_CUDA_EXPECT(f.downloads == 1 && f.download_bytes == flush_bytes && f.uploads == 0,
                      "flush of 3 steps: %lld downloads of %lld bytes, %lld uploads (expected one of %lld bytes, none up)",
                      static_cast<long long>(f.downloads), static_cast<long long>(f.download_bytes), static_cast<long long>(f.uploads),
                      static_cast<long long>(flush_bytes));
    IREPA_CUDA_EXPECT(trainer.history().size() == 3 && std::isfinite(trainer.history().back().total),
                      "flush: %zu records, the last loss %g", trainer.history().size(),
                      trainer.history().empty() ? NAN : trainer.history().back().total);
    std::printf("trainer step on the GPU: %lld bytes up (the batch), nothing down; a flush of 3 steps: %lld bytes down\n",
                static_cast<long long>(batch_bytes), static_cast<long long>(f.download_bytes));
    fs::remove_all(dir);
  }

  // The trainer: GPU losses against the CPU's, and resume on the GPU bit-identical.
  {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("irepa_cuda_train_" + std::to_string(seed));
    sit_ref::write_shards((dir / "shards").string(), seed);
    const auto cpu_losses = sit_ref::train_losses_cpu((dir / "shards").string(), (dir / "cpu").string());
    data::ShardedDataset ds((dir / "shards").string());
    using Small = SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float, Cuda>;
    auto run = [&](const std::string& name, std::int64_t resume) {
      Small sm(sit_ref::train_model_config());
      sm.init(3);
      auto o = sit_ref::train_options((dir / name).string());
      o.resume_step = resume;
      return train(ctx, o, sm, sit_ref::train_objective(), ds, {}, nlohmann::json::object());
    };
    const auto straight = run("straight", 0);
    double worst = 0;
    for (std::size_t i = 0; i < straight.history.size() && i < cpu_losses.size(); ++i)
      worst = std::max(worst, std::abs(straight.history[i].total - cpu_losses[i]) / std::abs(cpu_losses[i]));
    IREPA_CUDA_EXPECT(straight.history.size() == 20 && cpu_losses.size() == 20, "trainer: %zu GPU and %zu CPU steps, expected 20",
                      straight.history.size(), cpu_losses.size());
    IREPA_CUDA_EXPECT(worst <= 1e-3, "trainer: GPU loss differs from the CPU run's by %.3g (relative) at worst", worst);
    fs::create_directories(dir / "resumed" / "checkpoints");
    fs::copy_file(dir / "straight" / "checkpoints" / "0000010.safetensors", dir / "resumed" / "checkpoints" / "0000010.safetensors");
    const auto resumed = run("resumed", 10);
    bool same = resumed.ema.numel() == straight.ema.numel();
    for (std::int64_t i = 0; same && i < straight.ema.numel(); ++i) same = resumed.ema[i] == straight.ema[i];
    IREPA_CUDA_EXPECT(same, "trainer: the EMA after resuming at step 10 differs from the straight run's");
    io::SafeTensorsFile a((dir / "straight" / "checkpoints" / "0000020.safetensors").string());
    io::SafeTensorsFile b((dir / "resumed" / "checkpoints" / "0000020.safetensors").string());
    std::size_t differing = 0;
    for (const auto& n : a.names()) {
      const auto x = a.load<float>(n), y = b.load<float>(n);
      for (std::int64_t i = 0; i < x.numel(); ++i)
        if (x[i] != y[i]) {
          ++differing;
          break;
        }
    }
    IREPA_CUDA_EXPECT(differing == 0, "trainer: %zu of %zu checkpoint tensors differ between the resumed and the straight run",
                      differing, a.names().size());
    // The sample grids (drawn on the GPU from the EMA): written, and the same after resuming.
    auto slurp = [](const fs::path& p) {
      std::ifstream f(p, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(f), {});
    };
    const std::string grid = slurp(dir / "straight" / "samples" / "0000020.png");
    IREPA_CUDA_EXPECT(grid.size() > 100, "trainer: no sample grid at step 20 (%zu bytes)", grid.size());
    IREPA_CUDA_EXPECT(grid == slurp(dir / "resumed" / "samples" / "0000020.png"), "trainer: the resumed run's step-20 grid differs");
    IREPA_CUDA_EXPECT(grid != slurp(dir / "straight" / "samples" / "0000010.png"), "trainer: the grids of steps 10 and 20 are equal");
    std::printf("trainer on the GPU: 20 steps, loss within %.2g of the CPU run's; resumed run bit-identical: %s\n", worst,
                same && differing == 0 ? "yes" : "no");
    fs::remove_all(dir);
  }

  // An online ViT target on the GPU: placed on the model's device (its twin built from the host
  // model), the raw images going up once per step, and the run's losses against the CPU run's.
  {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("irepa_cuda_online_" + std::to_string(seed));
    const auto ds = sit_ref::online_images(seed);
    const std::vector<TargetEncoder> online{sit_ref::online_vit(seed)};
    const auto placed = place_encoders<Cuda>(online);
    const std::string where = describe_placement(placed);
    IREPA_CUDA_EXPECT(placed.size() == 1 && !placed[0].on_host() && where == "tiny-vit on cuda",
                      "online ViT: placed as '%s', expected 'tiny-vit on cuda'", where.c_str());
    const auto cpu_losses = sit_ref::online_losses_cpu(ds, online, (dir / "cpu").string());
    SiT<Dynamic, DynamicPatch, REPAHead, float, Cuda> sm(sit_ref::online_model_config());
    sm.init(3);
    const auto r = train(ctx, sit_ref::online_options((dir / "gpu").string()), sm, SiTObjective{.proj_coeff = 1.0}, ds, online,
                         nlohmann::json::object());
    double worst = 0;
    for (std::size_t i = 0; i < r.history.size() && i < cpu_losses.size(); ++i)
      worst = std::max(worst, std::abs(r.history[i].total - cpu_losses[i]) / std::abs(cpu_losses[i]));
    IREPA_CUDA_EXPECT(r.history.size() == 6 && cpu_losses.size() == 6, "online ViT: %zu GPU and %zu CPU steps, expected 6",
                      r.history.size(), cpu_losses.size());
    IREPA_CUDA_EXPECT(worst <= 1e-3, "online ViT: GPU loss differs from the CPU run's by %.3g (relative) at worst", worst);
    std::printf("trainer with an online ViT target on the GPU: 6 steps, loss within %.2g of the CPU run's\n", worst);
    fs::remove_all(dir);
  }

  // The JiT trainer on the GPU (in-context tokens, strip, RoPE, q/k norm, SwiGLU, both EMAs):
  // losses against the CPU run's, and a resumed run bit-identical to the straight one.
  {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("irepa_cuda_jit_train_" + std::to_string(seed));
    sit_ref::write_shards((dir / "shards").string(), seed);
    const auto cpu_losses = sit_ref::jit_train_losses_cpu((dir / "shards").string(), (dir / "cpu").string());
    data::ShardedDataset ds((dir / "shards").string());
    using Small = JiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float, Cuda>;
    auto run = [&](const std::string& name, std::int64_t resume) {
      Small sm(sit_ref::jit_train_model_config());
      sm.init(3);
      auto o = sit_ref::jit_train_options((dir / name).string());
      o.resume_step = resume;
      return train(ctx, o, sm, sit_ref::jit_train_objective(), ds, {}, nlohmann::json::object());
    };
    const auto straight = run("straight", 0);
    double worst = 0;
    for (std::size_t i = 0; i < straight.history.size() && i < cpu_losses.size(); ++i)
      worst = std::max(worst, std::abs(straight.history[i].total - cpu_losses[i]) / std::abs(cpu_losses[i]));
    IREPA_CUDA_EXPECT(straight.history.size() == 20 && cpu_losses.size() == 20, "JiT trainer: %zu GPU and %zu CPU steps, expected 20",
                      straight.history.size(), cpu_losses.size());
    IREPA_CUDA_EXPECT(worst <= 1e-3, "JiT trainer: GPU loss differs from the CPU run's by %.3g (relative) at worst", worst);
    fs::create_directories(dir / "resumed" / "checkpoints");
    fs::copy_file(dir / "straight" / "checkpoints" / "0000010.safetensors", dir / "resumed" / "checkpoints" / "0000010.safetensors");
    const auto resumed = run("resumed", 10);
    bool same = resumed.ema.numel() == straight.ema.numel();
    for (std::int64_t i = 0; same && i < straight.ema.numel(); ++i) same = resumed.ema[i] == straight.ema[i];
    IREPA_CUDA_EXPECT(same, "JiT trainer: the EMA after resuming at step 10 differs from the straight run's");
    std::ifstream ga(dir / "straight" / "samples" / "0000020.png", std::ios::binary), gb(dir / "resumed" / "samples" / "0000020.png",
                                                                                             std::ios::binary);
    const std::string a((std::istreambuf_iterator<char>(ga)), {}), b((std::istreambuf_iterator<char>(gb)), {});
    IREPA_CUDA_EXPECT(a.size() > 100 && a == b, "JiT trainer: step-20 sample grids missing (%zu bytes) or different after resuming",
                      a.size());
    std::printf("JiT trainer on the GPU: 20 steps, loss within %.2g of the CPU run's; resumed run bit-identical: %s\n", worst,
                same ? "yes" : "no");
    fs::remove_all(dir);
  }

  // The golden files: folders from the command line, else the build's defaults.
  std::vector<std::filesystem::path> dirs;
  for (int i = 1; i < argc; ++i) dirs.emplace_back(argv[i]);
  if (dirs.empty()) dirs = {IREPA_GOLDEN_DIR, IREPA_EXTRA_GOLDEN_DIR};
  int files = 0;
  for (const auto& d : dirs) files += golden_files(ctx, d);
  IREPA_CUDA_EXPECT(files >= 5, "only %d SiT and JiT golden files found (folders given or built in)", files);
  // The samplers with their state on the GPU (float).
  for (const auto& d : dirs) {
    const auto path = d / "samplers_sit.safetensors";
    if (!std::filesystem::exists(path)) continue;
    for (const auto& r : golden::check_sit_sampler_on<float>(io::SafeTensorsFile(path.string()), 1e-4, ctx)) {
      IREPA_CUDA_EXPECT(r.ok(), "golden sampler %s: relative error %.3g (tolerance %.0e)", r.name.c_str(), r.rel, r.tol);
      std::printf("golden sampler %s on the GPU in float: relative error %.2g\n", r.name.c_str(), r.rel);
    }
  }
  return cuda_test::finish("test_cuda_sit");
}
