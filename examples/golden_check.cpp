// irepa-golden-check FILE...: reads files of the golden format (../shared/golden/README.md),
// rebuilds what each describes from its metadata `config`, runs our code, prints the worst
// relative error per tensor group, and exits non-zero when any is above tolerance.
//
// Models understood so far: `spatial_metrics`. The SiT, JiT, sampler and encoder issues add
// theirs; a file of another kind is reported as not understood (exit 2), never skipped.

#include <cmath>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include <irepa/io/safetensors.hpp>
#include <irepa/metrics/spatial.hpp>

namespace {

using namespace irepa;

struct Row {
  std::string group;
  double rel;
  double tol;
};

/// ||ours - ref|| / ||ref|| over a list of values (NaN positions must agree).
double rel_error(const std::vector<double>& ours, const Tensor<double>& ref) {
  IREPA_CHECK(static_cast<std::int64_t>(ours.size()) == ref.numel(), "golden-check: {} values against {} in the file", ours.size(),
              ref.numel());
  double d = 0, n = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double a = ours[static_cast<std::size_t>(i)], b = ref[i];
    if (std::isnan(a) || std::isnan(b)) {
      if (std::isnan(a) != std::isnan(b)) return INFINITY;
      continue;
    }
    d += (a - b) * (a - b);
    n += b * b;
  }
  return n > 0 ? std::sqrt(d / n) : std::sqrt(d);
}

std::vector<Row> check_spatial_metrics(const io::SafeTensorsFile& f, const nlohmann::json& cfg) {
  metrics::SpatialMetricOptions o;
  o.lds_far = cfg.at("lds").value("far_dist", o.lds_far);
  o.cds_dmax = cfg.at("cds").value("dmax", o.cds_dmax);
  o.srss_near_max = cfg.at("srss").value("d_pos", o.srss_near_max);
  o.srss_near_min = cfg.at("srss").value("d_pos_min", o.srss_near_min);
  o.srss_far = cfg.at("srss").value("d_neg", o.srss_far);
  o.rmsc_sqrt = cfg.at("rmsc").value("sqrt", o.rmsc_sqrt);
  o.norm_eps = cfg.at("rmsc").value("eps", o.norm_eps);
  const auto grid = cfg.at("grid").get<std::vector<std::int64_t>>();
  IREPA_CHECK(grid.size() == 2, "golden-check: config grid has {} entries, expected [H, W]", grid.size());
  auto feats = f.load<float>("inputs/features");
  Tensor<std::uint8_t> masks;
  if (f.contains("inputs/masks")) masks = f.load<std::uint8_t>("inputs/masks");
  CpuContext ctx;
  metrics::GridDistances g(grid[0], grid[1], metrics::required_radius(o));
  const auto r = metrics::spatial_metrics<float>(ctx, feats, g, masks.cview(), o);
  std::vector<Row> rows;
  const double tol = 1e-5;  // the file is float32, as the reference computes it
  for (const auto& [name, v] : {std::pair{"lds", &r.lds}, {"cds", &r.cds}, {"srss", &r.srss}, {"rmsc", &r.rmsc}}) {
    rows.push_back({std::string("outputs/") + name, rel_error(*v, f.load<double>(std::string("outputs/") + name)), tol});
    const std::string mean_key = std::string("outputs/") + name + "_mean";
    if (f.contains(mean_key))
      rows.push_back({mean_key, rel_error({metrics::SpatialMetricsResult::mean(*v)}, f.load<double>(mean_key)), tol});
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::printf("usage: %s FILE.safetensors...\n  checks our implementation against golden files (models: spatial_metrics)\n", argv[0]);
    return argc < 2 ? 2 : 0;
  }
  int status = 0;
  for (int i = 1; i < argc; ++i) {
    try {
      io::SafeTensorsFile f(argv[i]);
      const auto model = f.metadata("model");
      const auto config = f.metadata("config");
      IREPA_CHECK(model && config, "golden-check: '{}' has no model/config metadata (not a golden file)", argv[i]);
      std::vector<Row> rows;
      if (*model == "spatial_metrics") {
        rows = check_spatial_metrics(f, nlohmann::json::parse(*config));
      } else {
        std::printf("%s: model '%s' is not understood by this build yet\n", argv[i], model->c_str());
        status = std::max(status, 2);
        continue;
      }
      bool ok = true;
      std::printf("%s (%s)\n", argv[i], model->c_str());
      for (const auto& r : rows) {
        const bool pass = r.rel <= r.tol;
        ok = ok && pass;
        std::printf("  %-24s rel %.3e  (tol %.0e) %s\n", r.group.c_str(), r.rel, r.tol, pass ? "ok" : "FAIL");
      }
      if (!ok) status = std::max(status, 1);
    } catch (const std::exception& e) {
      std::printf("%s: error: %s\n", argv[i], e.what());
      status = std::max(status, 2);
    }
  }
  return status;
}
