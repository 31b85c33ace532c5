// irepa-bench-ops: Google Benchmark cases for every op, forward and backward, registered at run
// time for the layer configuration given on the command line (defaults: SiT-B/2 shapes,
// B=4, T=256, D=768, 12 heads, float). Our flags come first; Google Benchmark's flags
// (--benchmark_filter=..., --benchmark_format=csv, ...) pass through.
//
//   irepa-bench-ops                                   # every op at SiT-B/2 shapes, float
//   irepa-bench-ops --batch 8 --tokens 1024 --width 1152 --heads 16 --dtype all
//   irepa-bench-ops --benchmark_filter='attention.*'  # one family
//
// Counters: GFLOP/s (multiply-add = 2 flops) for compute ops, GB/s (bytes read + written once)
// for memory-bound ones.

#include <benchmark/benchmark.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "irepa/core/context.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/metrics/spatial.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/attention.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/embedding.hpp"
#include "irepa/ops/linear.hpp"
#include "irepa/ops/modulate.hpp"
#include "irepa/ops/norm.hpp"
#include "irepa/ops/reduce.hpp"
#include "irepa/ops/rope.hpp"
#include "../examples/fail_safe.hpp"

namespace {

using namespace irepa;

struct Config {
  std::int64_t batch = 4, tokens = 256, width = 768, heads = 12, mlp_ratio = 4, patch = 2, in_channels = 4, kernel = 3;
  std::int64_t z_dim = 768;
  std::int64_t metric_dim = 1536, metric_batch = 16;  // spatial metrics: encoder width, images per call
  std::string dtype = "float";
  std::string backend = "cpu";
  int threads = 0;
};

CpuContext& context(int threads) {
  static CpuContext ctx(threads);
  return ctx;
}

/// Keeps x alive for the whole run and returns a pointer to it: benchmark bodies run after
/// registration returns, so every tensor (and every view's owner) must outlive it.
template <class X>
X* hold(X&& x) {
  static std::vector<std::shared_ptr<void>> kept;
  auto p = std::make_shared<std::remove_cvref_t<X>>(std::forward<X>(x));
  kept.push_back(p);
  return p.get();
}

template <class T>
Tensor<T> random(const Shape& s, std::uint64_t stream) {
  Tensor<T> t(s);
  Philox g(1234, stream);
  g.normal(t.view());
  return t;
}

/// Registers name/<config>/<dtype> running `body` per iteration, with a flop or byte rate.
void add(const std::string& name, const Config& c, const std::string& dtype, double flops, double bytes,
         std::function<void()> body) {
  const std::string full = name + "/B" + std::to_string(c.batch) + "_T" + std::to_string(c.tokens) + "_D" +
                           std::to_string(c.width) + "_H" + std::to_string(c.heads) + "/" + dtype + "/" + c.backend;
  benchmark::RegisterBenchmark(full.c_str(), [=](benchmark::State& st) {
    for (auto _ : st) body();
    if (flops > 0) st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    if (bytes > 0) st.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  })->Unit(benchmark::kMillisecond)->UseRealTime();
}

template <class T>
void register_all(const Config& c, const std::string& dtype) {
  CpuContext& ctx = context(c.threads);
  const std::int64_t B = c.batch, N = c.tokens, D = c.width, H = c.heads, hd = D / H, F = c.mlp_ratio * D;
  const auto g = static_cast<std::int64_t>(std::lround(std::sqrt(static_cast<double>(N))));
  const double s = sizeof(T), rows = static_cast<double>(B * N);
  const double bnd = rows * static_cast<double>(D);

    auto x = hold(random<T>({B, N, D}, 1));
  auto dyD = hold(random<T>({B, N, D}, 2));
  auto yD = hold(Tensor<T>(Shape{B, N, D}));
  auto dxD = hold(Tensor<T>(Shape{B, N, D}));

  // Linear D -> 4D (the MLP's fc1) and D -> D.
  for (std::int64_t out : {D, F}) {
    auto w = hold(random<T>({out, D}, 3));
    auto b = hold(random<T>({out}, 4));
    auto y = hold(Tensor<T>(Shape{B, N, out}));
    auto dy = hold(random<T>({B, N, out}, 5));
    auto dw = hold(Tensor<T>::zeros({out, D}));
    auto db = hold(Tensor<T>::zeros({out}));
    const double fl = 2.0 * rows * static_cast<double>(D * out);
    const std::string tag = "linear_" + std::to_string(D) + "x" + std::to_string(out);
    add(tag + "_fwd", c, dtype, fl, 0, [=, &ctx] { ops::linear_forward<T>(ctx, *x, *w, *b, y->view()); });
    add(tag + "_bwd", c, dtype, 2 * fl, 0,
        [=, &ctx] { ops::linear_backward<T>(ctx, *x, *w, *dy, dxD->view(), dw->view(), db->view()); });
  }

  // The GEMMs of a transformer block's linears, through the GEMM the ops use (ours for float)
  // and through Eigen's contraction, side by side: y = x W^T, dx = dy W, dW = dy^T x.
  for (std::int64_t out : {D, F}) {
    auto w = hold(random<T>({out, D}, 10));
    auto dy = hold(random<T>({B, N, out}, 11));
    auto y = hold(Tensor<T>(Shape{B, N, out}));
    auto dw = hold(Tensor<T>(Shape{out, D}));
    const double fl = 2.0 * rows * static_cast<double>(D * out);
    using ops::cpu::Trans;
    struct Product {
      const char* name;
      std::function<void(bool eigen)> run;
    };
    const auto pick = [&ctx](bool eigen, auto a, Trans ta, auto b, Trans tb, auto cc) {
      if (eigen)
        ops::cpu::gemm_eigen<T>(ctx, a, ta, b, tb, cc, false);
      else
        ops::cpu::gemm<T>(ctx, a, ta, b, tb, cc, false);
    };
    const Product products[] = {
        {"xWt", [=](bool e) { pick(e, x->cview().matrix(), Trans::N, w->cview().matrix(), Trans::T, y->view().matrix()); }},
        {"dyW", [=](bool e) { pick(e, dy->cview().matrix(), Trans::N, w->cview().matrix(), Trans::N, dxD->view().matrix()); }},
        {"dytx", [=](bool e) { pick(e, dy->cview().matrix(), Trans::T, x->cview().matrix(), Trans::N, dw->view().matrix()); }},
    };
    for (const Product& pr : products)
      for (bool eigen : {false, true}) {
        const std::string tag = "gemm_" + std::to_string(D) + "x" + std::to_string(out) + "_" + pr.name + (eigen ? "_eigen" : "_irepa");
        auto run = pr.run;
        add(tag, c, dtype, fl, 0, [run, eigen] { run(eigen); });
      }
  }

  // Conv k x k on the token grid (iREPA's projector, D -> z_dim), when T is a square grid.
  if (g * g == N) {
    const int k = static_cast<int>(c.kernel);
    auto w = hold(random<T>({c.z_dim, D, k, k}, 6));
    auto b = hold(random<T>({c.z_dim}, 7));
    auto y = hold(Tensor<T>(Shape{B, g, g, c.z_dim}));
    auto dy = hold(random<T>({B, g, g, c.z_dim}, 8));
    auto dw = hold(Tensor<T>::zeros({c.z_dim, D, k, k}));
    auto db = hold(Tensor<T>::zeros({c.z_dim}));
    auto xg = hold(x->view().reshape({B, g, g, D}));
    auto dxg = hold(dxD->view().reshape({B, g, g, D}));
    const double fl = 2.0 * rows * static_cast<double>(D * c.z_dim * k * k);
    const std::string tag = "conv" + std::to_string(k) + "x" + std::to_string(k);
    add(tag + "_fwd", c, dtype, fl, 0, [=, &ctx] { ops::conv2d_same_forward<T>(ctx, *xg, *w, *b, y->view()); });
    add(tag + "_bwd", c, dtype, 2 * fl, 0,
        [=, &ctx] { ops::conv2d_same_backward<T>(ctx, *xg, *w, *dy, *dxg, dw->view(), db->view()); });

    // Patch embedding of the latent image the tokens come from.
    const std::int64_t p = c.patch, C = c.in_channels;
    auto img = hold(random<T>({B, C, g * p, g * p}, 9));
    auto dimg = hold(Tensor<T>(Shape{B, C, g * p, g * p}));
    auto pw = hold(random<T>({D, C, p, p}, 10));
    auto pb = hold(random<T>({D}, 11));
    auto dpw = hold(Tensor<T>::zeros({D, C, p, p}));
    auto dpb = hold(Tensor<T>::zeros({D}));
    const double pfl = 2.0 * rows * static_cast<double>(D * C * p * p);
    add("patchify_fwd", c, dtype, pfl, 0, [=, &ctx] { ops::patchify_forward<T>(ctx, *img, *pw, *pb, yD->view()); });
    add("patchify_bwd", c, dtype, 2 * pfl, 0,
        [=, &ctx] { ops::patchify_backward<T>(ctx, *img, *pw, *dyD, dimg->view(), dpw->view(), dpb->view()); });
  }

  // Attention from fused qkv; optionally with q/k RMSNorm and RoPE (JiT's variant).
  if (D % H == 0) {
    auto qkv = hold(random<T>({B, N, 3 * D}, 12));
    auto dqkv = hold(Tensor<T>(Shape{B, N, 3 * D}));
    auto qw = hold(random<T>({hd}, 13));
    auto kw = hold(random<T>({hd}, 14));
    auto dqw = hold(Tensor<T>::zeros({hd}));
    auto dkw = hold(Tensor<T>::zeros({hd}));
    const double fl = 4.0 * static_cast<double>(B * H) * static_cast<double>(N * N * hd);
    // The spec views the RoPE table, so both live in one object the lambdas share.
    struct Setup {
      ops::AttentionSpec<T> spec;
      std::pair<Tensor<T>, Tensor<T>> table;
    };
    for (int variant = 0; variant < 2; ++variant) {
      if (variant == 1 && (g * g != N || hd % 4 != 0)) continue;
      auto st = hold(Setup{});
      st->spec.heads = H;
      if (variant == 1) {
        st->table = ops::rope_table_axial_2d<T>(g, g, hd);
        st->spec.q_norm_weight = qw->view();
        st->spec.k_norm_weight = kw->view();
        st->spec.rope_cos = st->table.first.view();
        st->spec.rope_sin = st->table.second.view();
      }
      const std::string tag = variant == 0 ? "attention" : "attention_qknorm_rope";
      auto cache = hold(ops::attention_forward<T>(ctx, *qkv, st->spec, yD->view()));
      add(tag + "_fwd", c, dtype, fl, 0, [=, &ctx] { ops::attention_forward<T>(ctx, *qkv, st->spec, yD->view()); });
      add(tag + "_bwd", c, dtype, 2 * fl, 0, [=, &ctx] {
        ops::attention_backward<T>(ctx, st->spec, *cache, *dyD, dqkv->view(), dqw->view(), dkw->view());
      });
    }
  }

  // Row and pointwise ops (memory-bound: GB/s counts one read of each input and one write).
  auto rstd = hold(Tensor<T>(Shape{B * N}));
  auto wD = hold(random<T>({D}, 15));
  auto dwD = hold(Tensor<T>::zeros({D}));
  add("layer_norm_fwd", c, dtype, 0, 2 * bnd * s, [=, &ctx] { ops::layer_norm_forward<T>(ctx, *x, T(1e-6), yD->view(), rstd->view()); });
  add("layer_norm_bwd", c, dtype, 0, 3 * bnd * s, [=, &ctx] { ops::layer_norm_backward<T>(ctx, *yD, *rstd, *dyD, dxD->view()); });
  add("rms_norm_fwd", c, dtype, 0, 2 * bnd * s, [=, &ctx] { ops::rms_norm_forward<T>(ctx, *x, *wD, T(1e-6), yD->view(), rstd->view()); });
  add("rms_norm_bwd", c, dtype, 0, 3 * bnd * s,
      [=, &ctx] { ops::rms_norm_backward<T>(ctx, *x, *wD, *rstd, *dyD, dxD->view(), dwD->view()); });
  auto shift = hold(random<T>({B, D}, 16));
  auto scale = hold(random<T>({B, D}, 17));
  auto dsh = hold(Tensor<T>(Shape{B, D}));
  auto dsc = hold(Tensor<T>(Shape{B, D}));
  add("modulate_fwd", c, dtype, 0, 2 * bnd * s, [=, &ctx] { ops::modulate_forward<T>(ctx, *x, *shift, *scale, yD->view()); });
  add("modulate_bwd", c, dtype, 0, 3 * bnd * s,
      [=, &ctx] { ops::modulate_backward<T>(ctx, *x, *scale, *dyD, dxD->view(), dsh->view(), dsc->view()); });

  auto h = hold(random<T>({B, N, F}, 18));
  auto yh = hold(Tensor<T>(Shape{B, N, F}));
  auto dh = hold(Tensor<T>(Shape{B, N, F}));
  const double bnf = rows * static_cast<double>(F);
  add("gelu_tanh_fwd", c, dtype, 0, 2 * bnf * s, [=, &ctx] { ops::gelu_tanh_forward<T>(ctx, *h, yh->view()); });
  add("gelu_tanh_bwd", c, dtype, 0, 3 * bnf * s, [=, &ctx] { ops::gelu_tanh_backward<T>(ctx, *h, *yh, dh->view()); });
  add("silu_fwd", c, dtype, 0, 2 * bnf * s, [=, &ctx] { ops::silu_forward<T>(ctx, *h, yh->view()); });
  add("silu_bwd", c, dtype, 0, 3 * bnf * s, [=, &ctx] { ops::silu_backward<T>(ctx, *h, *yh, dh->view()); });
  if (F % 2 == 0) {
    auto ys = hold(Tensor<T>(Shape{B, N, F / 2}));
    auto dys = hold(random<T>({B, N, F / 2}, 19));
    add("swiglu_fwd", c, dtype, 0, 1.5 * bnf * s, [=, &ctx] { ops::swiglu_forward<T>(ctx, *h, ys->view()); });
    add("swiglu_bwd", c, dtype, 0, 2.5 * bnf * s, [=, &ctx] { ops::swiglu_backward<T>(ctx, *h, *dys, dh->view()); });
  }
  if (D % H == 0 && hd % 2 == 0) {
    auto angles = random<T>({N, hd / 2}, 20);
    auto cs = hold(Tensor<T>(Shape{N, hd / 2}));
    auto sn = hold(Tensor<T>(Shape{N, hd / 2}));
    for (std::int64_t i = 0; i < angles.numel(); ++i) {
      (*cs)[i] = static_cast<T>(std::cos(static_cast<double>(angles[i])));
      (*sn)[i] = static_cast<T>(std::sin(static_cast<double>(angles[i])));
    }
    auto x4 = hold(x->view().reshape({B, N, H, hd}));
    auto y4 = hold(yD->view().reshape({B, N, H, hd}));
    add("rope_fwd", c, dtype, 0, 2 * bnd * s,
        [=, &ctx] { ops::rope_forward<T>(ctx, *x4, *cs, *sn, ops::RopeMode::Interleaved, *y4); });
  }
  auto mean = hold(Tensor<T>(Shape{B, D}));
  auto std_ = hold(Tensor<T>(Shape{B, D}));
  add("token_mean_std_fwd", c, dtype, 0, bnd * s, [=, &ctx] { ops::token_mean_std_forward<T>(ctx, *x, mean->view(), std_->view()); });
  add("token_mean_std_bwd", c, dtype, 0, 2 * bnd * s,
      [=, &ctx] { ops::token_mean_std_backward<T>(ctx, *x, *mean, *std_, *shift, *scale, dxD->view()); });
  auto nrm = hold(Tensor<T>(Shape{B * N}));
  add("l2_normalize_fwd", c, dtype, 0, 2 * bnd * s, [=, &ctx] { ops::l2_normalize_forward<T>(ctx, *x, T(1e-12), yD->view(), nrm->view()); });
  auto cosv = hold(Tensor<T>(Shape{B * N}));
  auto dcos = hold(random<T>({B * N}, 21));
  add("cosine_similarity_fwd", c, dtype, 0, 2 * bnd * s,
      [=, &ctx] { ops::cosine_similarity_forward<T>(ctx, *x, *dyD, T(1e-12), cosv->view()); });
  auto ccache = hold(ops::cosine_similarity_forward<T>(ctx, *x, *dyD, T(1e-12), cosv->view()));
  add("cosine_similarity_bwd", c, dtype, 0, 4 * bnd * s,
      [=, &ctx] { ops::cosine_similarity_backward<T>(ctx, *ccache, *dcos, T(1e-12), dxD->view(), yD->view()); });

  auto table = hold(random<T>({1001, D}, 22));
  auto dtable = hold(Tensor<T>::zeros({1001, D}));
  auto idx = hold(Tensor<std::int64_t>(Shape{B}));
  Philox(5).randint(idx->view(), 0, 1001);
  auto emb = hold(Tensor<T>(Shape{B, D}));
  add("embedding_fwd", c, dtype, 0, 2.0 * static_cast<double>(B * D) * s,
      [=, &ctx] { ops::embedding_forward<T>(ctx, *table, *idx, emb->view()); });
  add("embedding_bwd", c, dtype, 0, 3.0 * static_cast<double>(B * D) * s,
      [=, &ctx] { ops::embedding_backward<T>(ctx, *idx, *shift, dtable->view()); });
  auto t = hold(Tensor<T>(Shape{B}, T(0.3)));
  auto tf = hold(Tensor<T>(Shape{B, 256}));
  // Spatial metrics (LDS, CDS, SRSS, RMSC) of encoder features [metric_batch, T, metric_dim].
  if (g * g == N) {
    auto feats = hold(random<T>({c.metric_batch, N, c.metric_dim}, 23));
    auto masks = hold(Tensor<std::uint8_t>(Shape{c.metric_batch, N}));
    for (std::int64_t i = 0; i < masks->numel(); ++i) (*masks)[i] = static_cast<std::uint8_t>((i * 7919) % 5 < 2);
    auto grid = hold(metrics::GridDistances(g, g, metrics::required_radius({})));
    const std::string name = "spatial_metrics/B" + std::to_string(c.metric_batch) + "_T" + std::to_string(N) + "_D" +
                             std::to_string(c.metric_dim) + "/" + dtype + "/" + c.backend;
    const double images = static_cast<double>(c.metric_batch);
    benchmark::RegisterBenchmark(name.c_str(), [=, &ctx](benchmark::State& st) {
      for (auto _ : st) benchmark::DoNotOptimize(metrics::spatial_metrics<T>(ctx, *feats, *grid, *masks));
      st.counters["images/s"] = benchmark::Counter(images, benchmark::Counter::kIsIterationInvariantRate);
    })->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  add("timestep_features_fwd", c, dtype, 0, static_cast<double>(B * 256) * s,
      [=, &ctx] { ops::timestep_features_forward<T>(ctx, *t, 256, tf->view()); });
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"irepa-bench-ops: every op, forward and backward, at one layer configuration.\n"
               "Google Benchmark flags (--benchmark_filter=REGEX, --benchmark_repetitions=N, --benchmark_format=csv, ...) "
               "are passed through."};
  app.allow_extras();
  app.add_option("--batch", c.batch, "images per batch (B)")->check(CLI::PositiveNumber);
  app.add_option("--tokens", c.tokens, "tokens per image (T); a square number enables conv and patchify")->check(CLI::PositiveNumber);
  app.add_option("--width", c.width, "hidden width (D)")->check(CLI::PositiveNumber);
  app.add_option("--heads", c.heads, "attention heads")->check(CLI::PositiveNumber);
  app.add_option("--mlp-ratio", c.mlp_ratio, "MLP hidden = ratio * D")->check(CLI::PositiveNumber);
  app.add_option("--patch", c.patch, "patch size of the patch embedding")->check(CLI::PositiveNumber);
  app.add_option("--in-channels", c.in_channels, "input channels of the patch embedding")->check(CLI::PositiveNumber);
  app.add_option("--kernel", c.kernel, "projector conv kernel (odd)")->check(CLI::PositiveNumber);
  app.add_option("--z-dim", c.z_dim, "projector output width (target encoder dim)")->check(CLI::PositiveNumber);
  app.add_option("--metric-dim", c.metric_dim, "spatial metrics: feature width")->check(CLI::PositiveNumber);
  app.add_option("--metric-batch", c.metric_batch, "spatial metrics: images per call")->check(CLI::PositiveNumber);
  app.add_option("--dtype", c.dtype, "float, double or all")->check(CLI::IsMember({"float", "double", "all"}));
  app.add_option("--backend", c.backend, "cpu (cuda arrives with the CUDA backend)")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", c.threads, "CPU threads (0: all hardware threads)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (c.backend == "cuda") {
    std::fprintf(stderr, "irepa-bench-ops: --backend cuda: the CUDA ops are not built yet (CPU only in this version)\n");
    return 2;
  }
  if (c.kernel % 2 == 0) {
    std::fprintf(stderr, "irepa-bench-ops: --kernel %lld must be odd\n", static_cast<long long>(c.kernel));
    return 2;
  }
  std::vector<std::string> rest = app.remaining();
  std::vector<char*> bargv{argv[0]};
  for (auto& a : rest) bargv.push_back(a.data());
  int bargc = static_cast<int>(bargv.size());
  benchmark::Initialize(&bargc, bargv.data());
  if (benchmark::ReportUnrecognizedArguments(bargc, bargv.data())) return 2;
  context(c.threads);
  benchmark::AddCustomContext("irepa config", fmt::format("B={} T={} D={} heads={} threads={} float GEMM kernel={}", c.batch,
                                                          c.tokens, c.width, c.heads, context(c.threads).threads(),
                                                          ops::cpu::kSgemmAvailable ? ops::cpu::kSgemmIsa : "eigen"));
  if (c.dtype == "float" || c.dtype == "all") register_all<float>(c, "float");
  if (c.dtype == "double" || c.dtype == "all") register_all<double>(c, "double");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
