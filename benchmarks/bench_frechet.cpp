// irepa-bench-frechet: the Frechet distance's cost at the evaluator's dimensions (pool_3: 2048,
// sFID: 2023), what irepa-eval and every online FID evaluation pay once per score. Features are
// random ReLU'd mixtures (pool_3-like: correlated, non-negative); the sample side's row count
// sets its covariance's rank (fewer rows than dimensions: singular, as in small evaluations).
// Prints one table row per method: the symmetric route (frechet.hpp) and the sqrtm route (the
// evaluator's scipy.linalg.sqrtm; about 2 minutes a run at 2048 on 2 cores), median and best of
// --repeats, and the value.
//
//   irepa-bench-frechet --dim 2048 --samples 5000 --reference 5000
//   irepa-bench-frechet --dim 2048 --samples 20 --reference 5000 --methods symmetric

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "irepa/core/rng.hpp"
#include "irepa/metrics/adm_evaluator.hpp"
#include "irepa/metrics/online_fid.hpp"

namespace {

/// [n, d] features: relu(z M), z standard normal, M a fixed random mixing (seeded), added to
/// FeatureMoments in chunks of rows, so 50k x 2048 needs no 800 MB matrix.
irepa::metrics::Gaussian statistics(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  using namespace irepa;
  Tensor<double> mix(Shape{d, d}), z(Shape{std::min<std::int64_t>(n, 4096), d});
  Philox(7).normal(mix.view());
  const Eigen::Map<const Eigen::MatrixXd> m(mix.data(), d, d);
  metrics::FeatureMoments moments(Eigen::VectorXd::Zero(d));
  Philox rng(seed);
  for (std::int64_t done = 0; done < n;) {
    const std::int64_t rows = std::min(z.size(0), n - done);
    rng.normal(z.view());
    const Eigen::Map<const Eigen::MatrixXd> zr(z.data(), d, z.size(0));  // column = row of features
    const Eigen::MatrixXd x = ((m.transpose() * zr.leftCols(rows)) / std::sqrt(static_cast<double>(d))).cwiseMax(0.0);
    Tensor<double> features(Shape{rows, d});  // x's columns are its rows
    std::copy_n(x.data(), features.numel(), features.data());
    moments.add<double>(features.cview());
    done += rows;
  }
  return moments.gaussian();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace irepa;
  std::int64_t dim = 2048, samples = 50000, reference = 50000;
  int repeats = 3;
  std::string methods = "both";
  CLI::App app{"irepa-bench-frechet: the Frechet distance's cost (symmetric and sqrtm routes)"};
  app.add_option("--dim", dim, "feature dimension")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--samples", samples, "rows behind the sample statistics")->check(CLI::Range(2, 1 << 30))->capture_default_str();
  app.add_option("--reference", reference, "rows behind the reference statistics")->check(CLI::Range(2, 1 << 30))->capture_default_str();
  app.add_option("--repeats", repeats, "timed runs per method")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--methods", methods, "symmetric, sqrtm or both")->check(CLI::IsMember({"symmetric", "sqrtm", "both"}))->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const metrics::Gaussian s = statistics(samples, dim, 1), r = statistics(reference, dim, 2);
    std::printf("| method | dim | samples | reference | median | best | FID |\n|---|---|---|---|---|---|---|\n");
    for (const auto& [name, method] : {std::pair{"symmetric", metrics::SqrtMethod::Symmetric}, std::pair{"sqrtm", metrics::SqrtMethod::Sqrtm}}) {
      if (methods != "both" && methods != name) continue;
      std::vector<double> t;
      double fid = 0;
      for (int i = 0; i < repeats; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        fid = metrics::frechet_distance(s, r, method);
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(t.begin(), t.end());
      std::printf("| %s | %lld | %lld | %lld | %.2f s | %.2f s | %.10g |\n", name, static_cast<long long>(dim),
                  static_cast<long long>(samples), static_cast<long long>(reference), t[t.size() / 2], t.front(), fid);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "irepa-bench-frechet: %s\n", e.what());
    return 1;
  }
  return 0;
}
