// irepa-bench-memory: the activation memory of a SiT's training forward (the cache backward
// consumes) beside its sampling forward (infer, which keeps no cache), counted as the peak bytes
// the CPU allocator hands out during the call, above what was in use before it (parameters,
// inputs). Prints a table: measured batches, then batches 64 and 256 from the per-image slope of
// the two largest measured batches (activations are linear in the batch: every one of them has a
// leading batch dimension), after checking that the smallest measured batch lies on that line.
//
// --infer-batches measures the sampling forward alone at larger batches (the training forward's
// cache would not fit a small machine there), a check on the extrapolation.
//
//   irepa-bench-memory                         # SiT-XL/2 iREPA, batches 1, 2, 4 measured
//   irepa-bench-memory --infer-batches 64      # and the sampling forward measured at 64
//   irepa-bench-memory --model SiT-B/2 --batches 2,4,8 --extrapolate 64,256

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "irepa/align/head.hpp"
#include "irepa/models/sit.hpp"
#include "train_step_timer.hpp"
#include "../examples/fail_safe.hpp"

namespace {

using namespace irepa;

struct Options {
  std::string model = "SiT-XL/2", head = "irepa";
  std::vector<std::int64_t> batches = {1, 2, 4}, extrapolate = {64, 256}, infer_batches = {};
  std::int64_t input_size = 32, z_dim = 768, encoder_depth = 8;
  int threads = 0;
};

struct Peaks {
  double train = 0, infer = 0;  // bytes
};

template <class Model>
Peaks measure(const CpuContext& ctx, const Model& m, std::int64_t B, bool train = true) {
  const auto& c = m.config;
  Philox rng(5);
  Tensor<float> x(Shape{B, c.in_channels, c.input_size, c.input_size}), t(Shape{B});
  Tensor<std::int64_t> y(Shape{B});
  rng.normal(x.view());
  rng.uniform(t.view());
  rng.randint(y.view(), 0, c.num_classes);
  Peaks p;
  auto peak_of = [](auto&& f) {
    const std::size_t before = Cpu::memory_stats().in_use;
    Cpu::reset_peak();
    f();
    return static_cast<double>(Cpu::memory_stats().peak_in_use - before);
  };
  if (train) p.train = peak_of([&] { const auto cache = m.forward(ctx, x, t, y, /*align=*/true); });
  p.infer = peak_of([&] { const auto out = m.infer(ctx, x, t, y); });
  return p;
}

std::string gib(double bytes) { return fmt::format("{:.3f} GiB", bytes / (1024.0 * 1024.0 * 1024.0)); }

template <class Model>
int run(const Options& o, const SiTConfig& cfg, typename Model::head_type head) {
  CpuContext ctx(o.threads);
  Model m(cfg, head);
  m.init(1);
  std::printf("%s %s head, %lld parameters, %lld tokens; CPU allocator, peak bytes above the resident ones during the call\n",
              o.model.c_str(), o.head.c_str(), static_cast<long long>(m.num_params()), static_cast<long long>(m.grid.tokens()));
  std::printf("| batch | training forward (cache kept) | sampling forward (infer) | ratio | how |\n|---|---|---|---|---|\n");
  std::vector<Peaks> peaks;
  for (std::int64_t B : o.batches) {
    peaks.push_back(measure(ctx, m, B));
    std::printf("| %lld | %s | %s | %.1fx | measured |\n", static_cast<long long>(B), gib(peaks.back().train).c_str(),
                gib(peaks.back().infer).c_str(), peaks.back().train / peaks.back().infer);
    std::fflush(stdout);
  }
  const std::size_t n = peaks.size();
  for (std::int64_t B : o.infer_batches) {
    const Peaks p = measure(ctx, m, B, /*train=*/false);
    std::printf("| %lld | - | %s | - | measured (sampling forward only) |\n", static_cast<long long>(B), gib(p.infer).c_str());
    std::fflush(stdout);
  }
  if (n < 3 || o.extrapolate.empty()) return 0;
  // The line through the two largest batches, and how far the smallest lies from it.
  const double b1 = static_cast<double>(o.batches[n - 2]), b2 = static_cast<double>(o.batches[n - 1]);
  auto line = [&](double Peaks::*f, double B) {
    const double slope = (peaks[n - 1].*f - peaks[n - 2].*f) / (b2 - b1);
    return peaks[n - 1].*f + slope * (B - b2);
  };
  const double b0 = static_cast<double>(o.batches[0]);
  const double dev_train = std::abs(line(&Peaks::train, b0) / peaks[0].train - 1);
  const double dev_infer = std::abs(line(&Peaks::infer, b0) / peaks[0].infer - 1);
  for (std::int64_t B : o.extrapolate) {
    const double tr = line(&Peaks::train, static_cast<double>(B)), in = line(&Peaks::infer, static_cast<double>(B));
    std::printf("| %lld | %s | %s | %.1fx | linear in the batch (batch %lld off the line by %.2f%% / %.2f%%) |\n",
                static_cast<long long>(B), gib(tr).c_str(), gib(in).c_str(), tr / in, static_cast<long long>(o.batches[0]),
                100 * dev_train, 100 * dev_infer);
  }
  return dev_train < 0.02 && dev_infer < 0.02 ? 0 : 1;  // not linear: the extrapolation is not to be trusted
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"irepa-bench-memory: activation memory of a SiT's training forward beside its sampling forward (CPU allocator)"};
  app.add_option("--model", o.model, "SiT-S/2, SiT-B/2, SiT-L/2, SiT-XL/2 (patch 2, 4 or 8)")->capture_default_str();
  app.add_option("--head", o.head, "irepa (conv 3x3 + z-score) or repa (MLP)")->check(CLI::IsMember({"irepa", "repa"}))->capture_default_str();
  app.add_option("--batches", o.batches, "batches to measure, smallest first (three or more to extrapolate)")->delimiter(',');
  app.add_option("--extrapolate", o.extrapolate, "batches to extrapolate to from the measured slope")->delimiter(',');
  app.add_option("--infer-batches", o.infer_batches, "batches at which to measure the sampling forward alone")->delimiter(',');
  app.add_option("--input-size", o.input_size, "latent height = width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--z-dim", o.z_dim, "target encoder width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--encoder-depth", o.encoder_depth, "aligned block")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    IREPA_CHECK(!o.batches.empty(), "irepa-bench-memory: --batches is empty");
    for (std::size_t i = 0; i < o.batches.size(); ++i)
      IREPA_CHECK(o.batches[i] > 0 && (i == 0 || o.batches[i] > o.batches[i - 1]), "irepa-bench-memory: --batches must be positive and increasing");
    const SiTConfig cfg = bench::bench_sit_config(o.model, o.input_size, o.z_dim, o.encoder_depth);
    return bench::with_bench_head(o.head, [&](auto head) { return run<SiT<Dynamic, DynamicPatch, decltype(head), float>>(o, cfg, head); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-bench-memory: %s\n", e.what());
    return 2;
  }
}
