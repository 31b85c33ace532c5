// irepa-golden-check FILE...: reads files of the golden format (../shared/golden/README.md),
// rebuilds what each describes from its metadata `config`, runs our code, prints the worst
// relative error per tensor group, and exits non-zero when any is above tolerance.
//
// The readers live in examples/golden/ (not public headers). A file may borrow its params/ from
// another file of its folder (config key params_from).
//
// Models understood so far: `spatial_metrics`, `encoder:hog` (float32, tolerance 1e-5), `encoder:dinov2`,
// `encoder:dinov3`, `encoder:pe`, `encoder:sam2`, `sd-vae` (the AutoencoderKL: encode, posterior, decode, uint8),
// `inception-fid` (the ADM evaluator's Inception-v3), `fid_statistics` (FID / sFID by both square roots, IS,
// precision / recall), `adm_npz` (.npz reference batches, stored and deflated, byte for byte),
// `SiT-sampler`, `SiT` and `JiT` (any depth, width, heads, patch,
// kernel size, number of encoders, path / in-context setting; run in double, or in float with
// --float). A file of another kind is reported as not understood (exit 2), never skipped.
//
//   irepa-golden-check [--float] [--all] FILE...
//     --float  run the models in float (tolerance 1e-4) instead of double (1e-9)
//     --all    print every tensor, not only the worst of each group

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "fail_safe.hpp"
#include "golden/golden.hpp"
#include <irepa/io/safetensors.hpp>
#include <irepa/metrics/spatial.hpp>

namespace {

using namespace irepa;

struct Row {
  std::string group;
  double rel;
  double tol;
};

/// The library's relative error (NaN positions must agree) on a list of values.
double rel_error(const std::vector<double>& ours, const Tensor<double>& ref) {
  return golden::rel_error<double>(TensorView<const double>(ours.data(), Shape{static_cast<std::int64_t>(ours.size())}),
                                   ref.cview().reshape(Shape{ref.numel()}));
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

/// grads/blocks.3.attn.qkv.weight -> grads/blocks.*; outputs/zs_tilde.1 -> outputs/zs_tilde.*
std::string group_of(const std::string& name) {
  std::string g;
  std::size_t i = 0;
  while (i < name.size()) {
    std::size_t j = name.find('.', i);
    std::string part = name.substr(i, j == std::string::npos ? std::string::npos : j - i);
    const bool number = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    g += number ? "*" : part;
    if (j == std::string::npos || number) break;
    g += '.';
    i = j + 1;
  }
  return g;
}

std::vector<Row> grouped(const std::vector<golden::Row>& rows, bool all);

std::vector<Row> check_sit(const io::SafeTensorsFile& f, bool use_float, bool all) {
  return grouped(use_float ? golden::check_sit<float>(f, 1e-4) : golden::check_sit<double>(f, 1e-9), all);
}

std::vector<Row> check_jit(const io::SafeTensorsFile& f, bool use_float, bool all) {
  return grouped(use_float ? golden::check_jit<float>(f, 1e-4) : golden::check_jit<double>(f, 1e-9), all);
}

std::vector<Row> check_sampler(const io::SafeTensorsFile& f, bool use_float, bool all) {
  return grouped(use_float ? golden::check_sit_sampler<float>(f, 1e-4) : golden::check_sit_sampler<double>(f, 1e-9), all);
}

std::vector<Row> grouped(const std::vector<golden::Row>& rows, bool all) {
  std::vector<Row> out;
  for (const auto& r : rows) {
    const std::string g = all ? r.name : group_of(r.name);
    auto it = std::find_if(out.begin(), out.end(), [&](const Row& o) { return o.group == g; });
    if (it == out.end())
      out.push_back({g, r.rel, r.tol});
    else if (!(r.rel <= it->rel))
      it->rel = r.rel;  // keeps NaN
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bool use_float = false, all = false;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: %s [--float] [--all] FILE.safetensors...\n"
          "  checks our implementation against golden files (models: SiT, JiT, SiT-sampler, encoder:hog, encoder:dinov2, encoder:dinov3, encoder:pe, encoder:sam2, sd-vae, inception-fid, fid_statistics, adm_npz, spatial_metrics)\n"
          "  --float  run models in float (tolerance 1e-4) instead of double (1e-9)\n"
          "  --all    print every tensor instead of the worst of each group\n"
          "exit status: 0 all within tolerance, 1 some above, 2 a file could not be checked\n",
          argv[0]);
      return 0;
    }
    if (a == "--float")
      use_float = true;
    else if (a == "--all")
      all = true;
    else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "%s: unknown option '%s' (see --help)\n", argv[0], a.c_str());
      return 2;
    } else
      files.push_back(a);
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: %s [--float] [--all] FILE.safetensors... (see --help)\n", argv[0]);
    return 2;
  }
  int status = 0;
  for (const std::string& file : files) {
    const char* path = file.c_str();
    try {
      io::SafeTensorsFile f(path);
      const auto model = f.metadata("model");
      const auto config = f.metadata("config");
      IREPA_CHECK(model && config, "golden-check: '{}' has no model/config metadata (not a golden file)", path);
      std::vector<Row> rows;
      if (*model == "spatial_metrics") {
        rows = check_spatial_metrics(f, nlohmann::json::parse(*config));
      } else if (*model == "SiT") {
        rows = check_sit(f, use_float, all);
      } else if (*model == "JiT") {
        rows = check_jit(f, use_float, all);
      } else if (*model == "SiT-sampler") {
        rows = check_sampler(f, use_float, all);
      } else if (*model == "encoder:dinov2" || *model == "encoder:dinov3" || *model == "encoder:pe") {
        rows = grouped(use_float ? golden::check_vit_encoder<float>(f, 1e-4) : golden::check_vit_encoder<double>(f, 1e-9), true);
      } else if (*model == "encoder:sam2") {
        rows = grouped(use_float ? golden::check_sam2_encoder<float>(f, 1e-4) : golden::check_sam2_encoder<double>(f, 1e-9), true);
      } else if (*model == "sd-vae") {
        rows = grouped(use_float ? golden::check_sd_vae<float>(f, 1e-4) : golden::check_sd_vae<double>(f, 1e-9), true);
      } else if (*model == "inception-fid") {
        rows = grouped(use_float ? golden::check_inception_fid<float>(f, 1e-4) : golden::check_inception_fid<double>(f, 1e-9), true);
      } else if (*model == "fid_statistics") {
        rows = grouped(use_float ? golden::check_fid_statistics<float>(f, 1e-4) : golden::check_fid_statistics<double>(f, 1e-9), true);
      } else if (*model == "adm_npz") {
        rows = grouped(golden::check_adm_npz(f), true);
      } else if (*model == "encoder:hog") {
        rows = grouped(golden::check_hog(f, 1e-5), true);  // float32 like the reference, in both modes
      } else {
        std::printf("%s: model '%s' is not understood by this build yet\n", path, model->c_str());
        status = std::max(status, 2);
        continue;
      }
      bool ok = true;
      std::printf("%s (%s)\n", path, model->c_str());
      for (const auto& r : rows) {
        const bool pass = r.rel <= r.tol;
        ok = ok && pass;
        std::printf("  %-44s rel %.3e  (tol %.0e) %s\n", r.group.c_str(), r.rel, r.tol, pass ? "ok" : "FAIL");
      }
      if (!ok) status = std::max(status, 1);
    } catch (const std::exception& e) {
      std::printf("%s: error: %s\n", path, e.what());
      status = std::max(status, 2);
    }
  }
  return status;
}
