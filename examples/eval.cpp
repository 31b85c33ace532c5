// irepa-eval: the ADM evaluator (guided-diffusion evaluations/evaluator.py) in C++. Two .npz
// batches in, the suite's table out: Inception Score, FID, sFID, Precision, Recall.
//
//   irepa-eval VIRTUAL_imagenet256_labeled.npz samples.npz --inception inception/pt_inception-2015-12-05.safetensors
//   irepa-eval ref.npz samples.npz --device cuda --batch-size 200 --json eval.json
//
// Each batch's arr_0 (uint8 [N, H, W, 3]) goes through the FID Inception-v3 (TF1 resize to 299,
// pool_3 for FID / IS / precision-recall, mixed_6/conv's first 7 channels for sFID). A batch that
// stores mu / sigma (and mu_s / sigma_s) has those used for FID (sFID), as the suite does; its
// arr_0 still feeds precision and recall. A reference of statistics only (mu, sigma and optionally
// mu_s, sigma_s, no arr_0: JiT's fid_stats files, or one --save-stats wrote) gives FID (and sFID)
// but no precision / recall. IS uses the sample batch's logits (pool_3 @ W, no bias)
// in chunks of --split-size rows. The Frechet distance's square root: --sqrt symmetric (the
// eigenvalues of a symmetric form of the product, fast) or sqrtm (scipy's route through a Schur form,
// with the evaluator's eps retry); they agree to ~1e-11 relative.
//
// Weights: the released pt_inception-2015-12-05 graph as torch-fidelity converted it
// (weights-inception-2015-12-05-6726825d.pth), turned into safetensors by
// tools/convert_encoder.py; nothing is downloaded. --inception random:SEED runs random weights:
// the numbers are then only a consistency check (same inputs, same bits), not an FID.
// --save-stats FILE.npz writes the sample batch's mu, sigma, mu_s, sigma_s (float64): a
// reference of statistics only for later runs.

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <irepa/io/npz.hpp>
#include <irepa/metrics/adm_evaluator.hpp>
#include <irepa/metrics/online_fid.hpp>

#include "fail_safe.hpp"
#include "eval_job.hpp"
#include "tool_support.hpp"

namespace {

using namespace irepa;
namespace fs = std::filesystem;

struct EvalOptions {
  std::string ref, sample, inception, prefix, device = "cpu", sqrt = "symmetric", json, save_stats;
  std::int64_t batch = 50, split_size = 5000;
  int threads = 0;
};

class CpuInception final : public examples::InceptionRunner {
 public:
  CpuInception(InceptionV3<float> net, int threads) : net_(std::move(net)), ctx_(threads) {}
  examples::InceptionActivations run(const Tensor<float>& images) override { return examples::run_inception(ctx_, net_, images); }
  std::string where() const override { return "cpu (" + std::to_string(ctx_.threads()) + " threads)"; }

 private:
  InceptionV3<float> net_;
  CpuContext ctx_;
};

/// The batch's arr_0, checked to be what the evaluator reads.
io::NpyArray images_of(const io::NpzFile& f) {
  io::NpyArray a = f.array("arr_0");
  IREPA_CHECK(a.dtype == DType::U8 && a.shape.rank() == 4 && a.shape[3] == 3,
              "irepa-eval: '{}' arr_0 has dtype '{}' and shape {}, expected uint8 images [N, H, W, 3] ('|u1', as np.savez writes them)",
              f.path(), a.descr, a.shape.str());
  IREPA_CHECK(a.shape[0] >= 2 && a.shape[1] > 0 && a.shape[2] > 0, "irepa-eval: '{}' arr_0 {} holds fewer than 2 images", f.path(),
              a.shape.str());
  return a;
}

struct Activations {
  Tensor<float> pool3, spatial, logits;
};

Activations activations(examples::InceptionRunner& net, const io::NpyArray& images, std::int64_t batch, const std::string& what) {
  const std::int64_t N = images.shape[0];
  Activations a{Tensor<float>(Shape{N, InceptionV3<float>::kPool3}), Tensor<float>(Shape{N, 17 * 17 * InceptionV3<float>::kSpatialChannels}),
                Tensor<float>(Shape{N, InceptionV3<float>::kClasses})};
  examples::Progress progress(what, N);
  for (std::int64_t i = 0; i < N; i += batch) {
    const std::int64_t n = std::min(batch, N - i);
    const auto f = net.run(images.load_rows<float>(i, n));
    std::copy_n(f.pool3.data(), f.pool3.numel(), a.pool3.data() + i * a.pool3.size(1));
    std::copy_n(f.spatial.data(), f.spatial.numel(), a.spatial.data() + i * a.spatial.size(1));
    std::copy_n(f.logits.data(), f.logits.numel(), a.logits.data() + i * a.logits.size(1));
    progress.add(n);
  }
  return a;
}

/// The stored statistics (mu_key / sigma_key) when the batch has them, else those of the features.
/// D: the features' dimension (the stored statistics must have it).
metrics::Gaussian statistics(const io::NpzFile& f, const char* mu_key, const char* sigma_key, const Tensor<float>& features, std::int64_t D,
                             bool& stored) {
  stored = f.contains(mu_key);
  if (!stored) {
    IREPA_CHECK(features.numel() > 0, "irepa-eval: '{}' has neither images (arr_0) nor {} / {}", f.path(), mu_key, sigma_key);
    return metrics::feature_statistics<float>(features.cview());
  }
  return metrics::stored_gaussian(f, mu_key, sigma_key, D);
}

int run(const EvalOptions& o) {
  IREPA_CHECK(o.batch > 0 && o.split_size > 0, "irepa-eval: --batch-size and --split-size must be positive");
  IREPA_CHECK(o.sqrt == "symmetric" || o.sqrt == "sqrtm", "irepa-eval: --sqrt '{}' is not symmetric or sqrtm", o.sqrt);
  IREPA_CHECK(o.device == "cpu" || o.device.starts_with("cuda"), "irepa-eval: --device '{}' is not cpu, cuda or cuda:N", o.device);
  std::string weights = o.inception;
  if (weights.empty())
    if (const char* e = std::getenv("IREPA_INCEPTION")) weights = e;
  IREPA_CHECK(!weights.empty(),
              "irepa-eval: no Inception weights: pass --inception FILE.safetensors (or set IREPA_INCEPTION); convert torch-fidelity's "
              "weights-inception-2015-12-05-6726825d.pth with tools/convert_encoder.py");
  const io::NpzFile ref(o.ref), sample(o.sample);
  const bool ref_has_images = ref.contains("arr_0");
  IREPA_CHECK(ref_has_images || ref.contains("mu"),
              "irepa-eval: reference '{}' holds neither images (arr_0) nor statistics (mu, sigma); it holds: {}", o.ref,
              fmt::format("{}", fmt::join(ref.names(), ", ")));
  const io::NpyArray sample_images = images_of(sample);
  const io::NpyArray ref_images = ref_has_images ? images_of(ref) : io::NpyArray{};
  const std::int64_t ref_count = ref_has_images ? ref_images.shape[0] : 0;

  const InceptionV3<float> host = metrics::load_fid_inception(weights, o.prefix);
  const bool random = weights.starts_with("random:");
  if (random)
    std::printf("warning: random Inception weights (%s): the numbers below are a consistency check, not FID / IS\n", weights.c_str());
  std::unique_ptr<examples::InceptionRunner> net;
  if (o.device == "cpu") {
    net = std::make_unique<CpuInception>(InceptionV3<float>::from_host(host), o.threads);
  } else {
#if defined(IREPA_WITH_CUDA)
    net = examples::make_cuda_inception(host, o.device == "cuda" ? 0 : std::stoi(o.device.substr(5)));
#else
    fail("irepa-eval: --device {} needs a build with CUDA", o.device);
#endif
  }
  std::printf("Inception-v3 on %s\n", net->where().c_str());
  const auto t0 = std::chrono::steady_clock::now();
  Activations ra;
  if (ref_has_images) {
    std::printf("Computing reference batch activations (%lld images of %s)...\n", static_cast<long long>(ref_count),
                ref_images.shape.str().c_str());
    ra = activations(*net, ref_images, o.batch, "reference");
  } else {
    std::printf("The reference batch holds statistics only: FID from its mu / sigma, no precision / recall\n");
  }
  std::printf("Computing/reading reference batch statistics...\n");
  bool ref_stored = false, ref_stored_s = false, sample_stored = false, sample_stored_s = false;
  constexpr std::int64_t D = InceptionV3<float>::kPool3, Ds = 17 * 17 * InceptionV3<float>::kSpatialChannels;
  const auto ref_stats = statistics(ref, "mu", "sigma", ra.pool3, D, ref_stored);
  const bool have_sfid = ref_has_images || ref.contains("mu_s");
  const auto ref_stats_s = have_sfid ? statistics(ref, "mu_s", "sigma_s", ra.spatial, Ds, ref_stored_s) : metrics::Gaussian{};
  std::printf("Computing sample batch activations (%lld images of %s)...\n", static_cast<long long>(sample_images.shape[0]),
              sample_images.shape.str().c_str());
  const Activations sa = activations(*net, sample_images, o.batch, "samples");
  const double net_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("Computing/reading sample batch statistics...\n");
  const auto sample_stats = statistics(sample, "mu", "sigma", sa.pool3, D, sample_stored);
  const auto sample_stats_s = statistics(sample, "mu_s", "sigma_s", sa.spatial, Ds, sample_stored_s);
  if (!o.save_stats.empty()) {
    io::NpzWriter w(o.save_stats);
    const auto put = [&](const char* name, const Eigen::MatrixXd& m, bool vector) {
      Tensor<double> t(vector ? Shape{m.size()} : Shape{m.rows(), m.cols()});
      for (std::int64_t r = 0; r < m.rows(); ++r)
        for (std::int64_t c = 0; c < m.cols(); ++c) t[r * m.cols() + c] = m(r, c);  // row-major, as numpy
      w.add<double>(name, t.cview());
    };
    put("mu", sample_stats.mean, true), put("sigma", sample_stats.cov, false);
    put("mu_s", sample_stats_s.mean, true), put("sigma_s", sample_stats_s.cov, false);
    w.finish();
    std::printf("Saved the sample batch's statistics to %s\n", o.save_stats.c_str());
  }
  std::printf("Computing evaluations...\n");
  const auto method = o.sqrt == "sqrtm" ? metrics::SqrtMethod::Sqrtm : metrics::SqrtMethod::Symmetric;
  const auto is = metrics::inception_score<float>(sa.logits.cview(), o.split_size);
  const double fid = metrics::frechet_distance(sample_stats, ref_stats, method);
  const double sfid = have_sfid ? metrics::frechet_distance(sample_stats_s, ref_stats_s, method) : NAN;
  metrics::PrecisionRecall pr;
  pr.precision = pr.recall = NAN;
  if (ref_has_images) pr = metrics::precision_recall<float>(ra.pool3.cview(), sa.pool3.cview(), 3);
  const auto number = [](double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v); };
  const auto text = [](double v) { return std::isnan(v) ? std::string("n/a (the reference holds statistics only)") : fmt::format("{:.10g}", v); };
  std::printf("Inception Score: %.10g\n", is.score);
  std::printf("FID: %.10g\n", fid);
  std::printf("sFID: %s\n", text(sfid).c_str());
  std::printf("Precision: %s\n", text(pr.precision).c_str());
  std::printf("Recall: %s\n", text(pr.recall).c_str());
  if (!o.json.empty()) {
    const double images = static_cast<double>(ref_count + sample_images.shape[0]);
    nlohmann::json j = {{"tool", "irepa-eval"},
                        {"inception_score", is.score},
                        {"inception_score_splits", is.splits},
                        {"fid", fid},
                        {"sfid", number(sfid)},
                        {"precision", number(pr.precision)},
                        {"recall", number(pr.recall)},
                        {"ref", {{"path", o.ref}, {"images", ref_count}, {"stored_stats", ref_stored}, {"stored_spatial_stats", ref_stored_s}}},
                        {"sample", {{"path", o.sample}, {"images", sample_images.shape[0]}, {"stored_stats", sample_stored},
                                    {"stored_spatial_stats", sample_stored_s}}},
                        {"inception", weights},
                        {"random_weights", random},
                        {"device", net->where()},
                        {"sqrt", o.sqrt},
                        {"split_size", o.split_size},
                        {"inception_images_per_second", images / net_seconds}};
    examples::write_json_atomic(o.json, j);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  EvalOptions o;
  CLI::App app{"irepa-eval: the ADM evaluator (Inception Score, FID, sFID, precision, recall) on two .npz batches"};
  app.add_option("ref_batch", o.ref, "reference batch .npz (arr_0 uint8 [N, H, W, 3]; mu, sigma, mu_s, sigma_s used when present; statistics alone give FID only)")->required();
  app.add_option("sample_batch", o.sample, "sample batch .npz (arr_0 uint8 [N, H, W, 3])")->required();
  app.add_option("--inception", o.inception, "Inception weights (safetensors, torch-fidelity names), or random:SEED; default $IREPA_INCEPTION");
  app.add_option("--inception-prefix", o.prefix, "name prefix of the weights in that file")->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--batch-size", o.batch, "images per Inception call")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_option("--sqrt", o.sqrt, "Frechet square root: symmetric or sqrtm")->capture_default_str();
  app.add_option("--split-size", o.split_size, "Inception Score: rows per chunk (the suite's 5000)")->capture_default_str();
  app.add_option("--json", o.json, "also write the results (and settings) to this JSON file");
  app.add_option("--save-stats", o.save_stats, "write the sample batch's mu, sigma, mu_s, sigma_s to this .npz (a statistics-only reference)");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    return examples::report_error("irepa-eval", e);
  }
}
