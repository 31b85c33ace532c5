// irepa-bench-sit: a whole SiT on the CPU, the training forward (which keeps its cache), the
// sampling forward (infer, which does not) and an objective step (forward, losses, backward into
// the flat gradient arena), at a model size given on the command line. Our flags
// come first; Google Benchmark's (--benchmark_filter, --benchmark_format=csv, ...) pass through.
//
//   irepa-bench-sit                          # SiT-B/2 iREPA (conv 3x3, z-score), batch 4, float
//   irepa-bench-sit --model XL/2 --batch 2 --head repa
//   irepa-bench-sit --model custom --depth 6 --hidden 512 --heads 8 --patch 4
//
// Counters: img/s, and GFLOP/s from the matmul and attention FLOPs (multiply-add = 2 flops;
// a training step counts 3x the forward).

#include <benchmark/benchmark.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <string>

#include "irepa/align/dispatch.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/models/sit.hpp"
#include "../examples/fail_safe.hpp"

namespace {

using namespace irepa;

struct Options {
  std::string model = "B/2", head = "irepa", dtype = "float";
  std::int64_t batch = 4, input_size = 32, in_channels = 4, z_dim = 768, encoder_depth = 4;
  std::int64_t depth = 0, hidden = 0, heads = 0, patch = 0;
  int threads = 0;
};

/// Forward FLOPs per image: the blocks' matmuls and attention, the projector and the embeddings.
double forward_flops(const SiTConfig& c, std::int64_t tokens, const std::string& head) {
  const double D = static_cast<double>(c.hidden_size), T = static_cast<double>(tokens), p = static_cast<double>(c.patch_size);
  const double block = T * (2 * D * 3 * D + 2 * D * D + 2 * 2 * D * 4 * D) + 2 * 2 * T * T * D + 2 * D * 6 * D;
  const double Z = static_cast<double>(c.z_dims.empty() ? 0 : c.z_dims[0]);
  const double proj = head == "irepa" ? 2 * T * D * Z * 9 : 2 * T * (D * 2048 + 2048.0 * 2048 + 2048 * Z);
  const double io = 2 * T * D * p * p * static_cast<double>(c.in_channels) * 2;
  return static_cast<double>(c.depth) * block + proj + io;
}

template <class T>
void register_model(const Options& o, const SiTConfig& cfg, CpuContext& ctx) {
  HeadChoice choice{.projection = o.head == "irepa" ? "conv" : "mlp", .spnorm = o.head == "irepa" ? "zscore" : "none"};
  with_head(choice, [&](auto head) {
    using Model = SiT<Dynamic, DynamicPatch, decltype(head), T>;
    auto* m = new Model(cfg, head);  // lives for the whole run (benchmarks run after registration)
    m->init(1);
    Philox rng(2);
    rng.normal(m->params().values(), T(0), T(0.02));  // no zero layers: real work in every op
    const std::int64_t B = o.batch;
    auto* x = new Tensor<T>(Shape{B, cfg.in_channels, cfg.input_size, cfg.input_size});
    auto* z = new Tensor<T>(Shape{B, m->grid.tokens(), o.z_dim});
    auto* y = new Tensor<std::int64_t>(Shape{B});
    auto* t = new Tensor<T>(Shape{B});
    auto* noise = new Tensor<T>(x->shape());
    rng.normal(x->view());
    rng.normal(z->view());
    rng.normal(noise->view());
    rng.uniform(t->view());
    rng.randint(y->view(), 0, cfg.num_classes);
    const double flops = forward_flops(cfg, m->grid.tokens(), o.head) * static_cast<double>(B);
    const std::string name = "SiT-" + o.model + "/" + o.head + "/B" + std::to_string(B) + "/" + o.dtype + "/threads" +
                             std::to_string(ctx.threads());
    std::printf("irepa config: %s, %lld parameters, %lld tokens, %.1f GFLOP forward per image\n", name.c_str(),
                static_cast<long long>(m->num_params()), static_cast<long long>(m->grid.tokens()), flops / 1e9 / static_cast<double>(B));
    benchmark::RegisterBenchmark((name + "/forward").c_str(), [=, &ctx](benchmark::State& st) {
      for (auto _ : st) benchmark::DoNotOptimize(m->forward(ctx, *x, *t, *y, false).out.data());
      st.counters["img/s"] = benchmark::Counter(static_cast<double>(B), benchmark::Counter::kIsIterationInvariantRate);
      st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    })->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark((name + "/infer").c_str(), [=, &ctx](benchmark::State& st) {
      for (auto _ : st) benchmark::DoNotOptimize(m->infer(ctx, *x, *t, *y).data());
      st.counters["img/s"] = benchmark::Counter(static_cast<double>(B), benchmark::Counter::kIsIterationInvariantRate);
      st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    })->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark((name + "/train_step").c_str(), [=, &ctx](benchmark::State& st) {
      SiTObjective obj;
      obj.proj_coeff = 1.0;
      const auto batch = upload_batch(ctx, HostBatch<T>{*x, *y, {z->cview()}}, m->label_rows());
      for (auto _ : st) {
        m->params().zero_grad();
        benchmark::DoNotOptimize(objective_step(ctx, *m, obj, batch, *t, *noise).scalars.data());
      }
      st.counters["img/s"] = benchmark::Counter(static_cast<double>(B), benchmark::Counter::kIsIterationInvariantRate);
      st.counters["GFLOP/s"] = benchmark::Counter(3 * flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    })->Unit(benchmark::kMillisecond)->UseRealTime();
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"irepa-bench-sit: a whole SiT on the CPU (forward, train step); Google Benchmark flags pass through"};
  app.allow_extras();
  app.add_option("--model", o.model, "S/2, B/2, L/2, XL/2 (any of S B L XL with patch 2, 4 or 8), or custom")->capture_default_str();
  app.add_option("--head", o.head, "irepa (conv 3x3 + z-score) or repa (MLP)")->check(CLI::IsMember({"irepa", "repa"}))->capture_default_str();
  app.add_option("--dtype", o.dtype, "float or double")->check(CLI::IsMember({"float", "double"}))->capture_default_str();
  app.add_option("--batch", o.batch, "images per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--input-size", o.input_size, "latent height = width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--z-dim", o.z_dim, "target encoder width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--encoder-depth", o.encoder_depth, "aligned block (1-based)")->capture_default_str();
  app.add_option("--depth", o.depth, "custom model: blocks");
  app.add_option("--hidden", o.hidden, "custom model: width");
  app.add_option("--heads", o.heads, "custom model: attention heads");
  app.add_option("--patch", o.patch, "custom model: patch size");
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::vector<std::string> rest = app.remaining();
  std::vector<char*> bargv{argv[0]};
  for (auto& s : rest) bargv.push_back(s.data());
  int bargc = static_cast<int>(bargv.size());
  benchmark::Initialize(&bargc, bargv.data());

  try {
    SiTConfig cfg;
    cfg.input_size = o.input_size;
    cfg.in_channels = o.in_channels;
    cfg.z_dims = {o.z_dim};
    cfg.encoder_depth = o.encoder_depth;
    cfg.kernel_size = 3;
    if (o.model == "custom") {
      cfg.depth = o.depth, cfg.hidden_size = o.hidden, cfg.num_heads = o.heads, cfg.patch_size = o.patch;
    } else {
      apply_model_name(cfg, o.model);
    }
    static CpuContext ctx(o.threads);
    if (o.dtype == "float")
      register_model<float>(o, cfg, ctx);
    else
      register_model<double>(o, cfg, ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-bench-sit: %s\n", e.what());
    return 2;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
