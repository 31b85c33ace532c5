// irepa-metrics: the four spatial metrics (LDS, CDS, SRSS, RMSC) of each encoder's patch tokens,
// and, given each encoder's gFID, how well each metric predicts it.
//
//   irepa-metrics --features dinov2-b=feats/dinov2.npy --features mae-l=feats/mae.safetensors
//                 --masks masks.npy --gfid gfid.csv --out results/
//
// Features: [N, T, D] per encoder, .npy (memory-mapped), .safetensors (tensor "features" or
// the file's only tensor) or a torch.save .pt (the released data/features/<enc>.pt: one tensor); all encoders must hold the same N images in the same order. Masks:
// [N, T] foreground masks (nonzero = foreground), .npy or .safetensors, aligned with the images,
// or a folder of PNG masks (one per image, in file-name order), prepared as the reference does:
// resized to 256x256 with Pillow's default filter, foreground = value > 0, max-pooled in 16x16
// cells, and only images with >= 64 foreground and >= 64 background cells kept -- the metrics of
// every encoder then use exactly those images, each with its own mask. Without masks SRSS is
// NaN. Work goes in batches of --batch images.
// Writes OUT/metrics.csv and OUT/metrics.md (mean of each metric per encoder, SRSS skipping
// images without a valid anchor). With --gfid (CSV with header "encoder,gfid" and optionally a
// "linear_probe" column), also OUT/correlations.csv and .md: Pearson, Spearman and Kendall of
// each metric (and linear-probe accuracy) with gFID across the encoders listed in both, and
// OUT/correlations.png: one scatter plot per metric against gFID with the fitted line.
// With --data DIR, the reference's released layout (its metrics/data folder) is read as it is:
// DIR/features/<enc>.pt (or .npy / .safetensors) for each encoder, DIR/masks/ (PNG masks) when
// present, the gFID at --steps from DIR/stats/fid/<run>.csv (columns Steps and FID; the file
// of each encoder named as the reference's spatial_metrics_comparison.py names it for
// --model-type), and the linear-probe accuracy from DIR/stats/lp/<enc>-none-mean/metrics.json
// (best_val_acc). --features, --masks and --gfid given as well take precedence.
// With --viz I: OUT/spatialnorm_<encoder>.png, the cosine-similarity maps of a few reference
// tokens of image I, raw and after spatial z-score normalisation (alpha --zscore-alpha).

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <plplot/plplot.h>

#include <irepa/io/npy.hpp>
#include <irepa/metrics/masks.hpp>
#include <irepa/ops/reduce.hpp>
#include <irepa/io/safetensors.hpp>
#include <irepa/metrics/correlation.hpp>
#include <irepa/metrics/spatial.hpp>
#include "fail_safe.hpp"
#include <irepa/io/files.hpp>
#include <irepa/io/json.hpp>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

namespace {

using namespace irepa;
namespace fs = std::filesystem;

/// An [N, ...] array on disk, read a batch of rows at a time.
class RowSource {
 public:
  explicit RowSource(const std::string& path) : path_(path) {
    if (fs::path(path).extension() == ".npy") {
      npy_.emplace(path);
      shape_ = npy_->shape();
    } else if (const auto ext = fs::path(path).extension(); ext == ".safetensors" || ext == ".pt" || ext == ".pth") {
      st_.emplace(path);
      if (st_->contains("features"))
        name_ = "features";
      else if (st_->contains("masks"))
        name_ = "masks";
      else if (st_->names().size() == 1)  // also a torch.save(tensor), named "tensor"
        name_ = st_->names()[0];
      else
        fail("irepa-metrics: '{}' holds {} tensors and none is named 'features' or 'masks'", path, st_->names().size());
      shape_ = st_->info(name_).shape;
    } else {
      fail("irepa-metrics: '{}': expected a .npy, .safetensors or .pt file", path);
    }
  }
  const Shape& shape() const { return shape_; }
  /// The rows idx[0], idx[1], ... stacked (contiguous runs read at once).
  template <class T>
  Tensor<T> gather(const std::vector<std::int64_t>& idx) const {
    Shape s = shape_;
    s[0] = static_cast<std::int64_t>(idx.size());
    Tensor<T> out(s);
    const std::int64_t row = shape_.numel() / std::max<std::int64_t>(shape_[0], 1);
    for (std::size_t i = 0; i < idx.size();) {
      std::size_t j = i + 1;
      while (j < idx.size() && idx[j] == idx[j - 1] + 1) ++j;
      const auto part = rows<T>(idx[i], static_cast<std::int64_t>(j - i));
      std::copy_n(part.data(), part.numel(), out.data() + static_cast<std::int64_t>(i) * row);
      i = j;
    }
    return out;
  }
  template <class T>
  Tensor<T> rows(std::int64_t begin, std::int64_t count) const {
    if (npy_) return npy_->load_rows<T>(begin, count);
    // safetensors or torch.save: convert just these rows from the mapped bytes (a row-major tensor).
    IREPA_CHECK(begin >= 0 && count >= 0 && begin + count <= shape_[0], "irepa-metrics: rows [{}, {}) outside {} of '{}'", begin,
                begin + count, shape_.str(), path_);
    const auto& info = st_->info(name_);
    const std::int64_t row = shape_.numel() / std::max<std::int64_t>(shape_[0], 1);
    const std::size_t es = dtype_size(info.dtype);
    const std::byte* p = st_->bytes(name_).data() + static_cast<std::size_t>(begin * row) * es;
    Shape s = shape_;
    s[0] = count;
    Tensor<T> out(s);
    constexpr bool want_float = std::is_floating_point_v<T>;
    IREPA_CHECK(want_float == io::detail::is_float(info.dtype), "irepa-metrics: '{}' holds {}, expected {}", path_,
                dtype_name(info.dtype), want_float ? "floats" : "integers");
    for (std::int64_t i = 0; i < out.numel(); ++i, p += es) {
      if constexpr (want_float)
        out[i] = static_cast<T>(io::detail::load_as_double(info.dtype, p));
      else
        out[i] = static_cast<T>(io::detail::load_as_int(info.dtype, p));
    }
    return out;
  }

 private:
  std::string path_, name_;
  std::optional<io::NpyFile> npy_;
  std::optional<io::SafeTensorsFile> st_;
  Shape shape_;
};

struct EncoderResult {
  double lds, cds, srss, rmsc;
  std::int64_t images, srss_valid;
};

std::string fmt_num(double v) { return std::isnan(v) ? "nan" : fmt::format("{:.6f}", v); }

/// A numeric CSV table: its header's column names and the rows, first column as text (the row's
/// name), the others as numbers (pandas' "nan" and empty fields are NaN). `what` names it in errors.
struct CsvTable {
  std::vector<std::string> cols;
  std::vector<std::pair<std::string, std::vector<double>>> rows;
  std::size_t col(const std::string& name) const {
    const auto it = std::find(cols.begin(), cols.end(), name);
    return it == cols.end() ? cols.size() : static_cast<std::size_t>(it - cols.begin());
  }
};
CsvTable read_csv_table(const std::string& path, const std::string& what) {
  std::istringstream in(io::read_regular_file(path, "irepa-metrics: " + what));  // a FIFO is refused, not waited on
  auto fields = [](std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    if (!line.empty() && line.back() == ',') f.emplace_back();
    return f;
  };
  CsvTable t;
  std::string line;
  IREPA_CHECK(std::getline(in, line), "irepa-metrics: {} '{}' is empty, expected a header line", what, path);
  t.cols = fields(line);
  int lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line == "\r") continue;
    const std::vector<std::string> f = fields(line);
    IREPA_CHECK(f.size() == t.cols.size(), "irepa-metrics: {} '{}' line {} has {} fields, expected {} ({})", what, path, lineno, f.size(),
                t.cols.size(), fmt::join(t.cols, ","));
    std::vector<double> v;
    for (std::size_t c = 1; c < f.size(); ++c) {
      if (f[c].empty() || f[c] == "nan" || f[c] == "NaN") {
        v.push_back(std::nan(""));
        continue;
      }
      std::size_t used = 0;
      double x = 0;
      try {
        x = std::stod(f[c], &used);
      } catch (const std::exception&) {
        used = 0;
      }
      IREPA_CHECK(used == f[c].size(), "irepa-metrics: {} '{}' line {}: '{}' ({}) is not a number", what, path, lineno, f[c], t.cols[c]);
      v.push_back(x);
    }
    t.rows.emplace_back(f[0], std::move(v));
  }
  return t;
}

using GfidTable = std::map<std::string, std::map<std::string, double>>;  // encoder -> gfid, linear_probe

GfidTable read_csv(const std::string& path) {
  const CsvTable t = read_csv_table(path, "gFID table");
  IREPA_CHECK(t.cols.size() >= 2 && t.cols[0] == "encoder" && t.cols[1] == "gfid",
              "irepa-metrics: '{}' must start with the header 'encoder,gfid[,linear_probe]'", path);
  GfidTable out;
  for (const auto& [name, v] : t.rows)
    for (std::size_t c = 1; c < t.cols.size(); ++c) out[name][t.cols[c]] = v[c - 1];
  return out;
}

/// The reference's evaluation CSV of each encoder's SiT run (spatial_metrics_comparison.py):
/// for sit-xl-2 the released runs' names, else its pattern for the 100K-step runs.
std::string released_fid_csv(const std::string& model_type, const std::string& enc) {
  static const std::map<std::string, std::string> xl = {
      {"dinov2-vit-b", "enc8-dinov2-b"}, {"dinov2-vit-l", "enc8-dinov2-l"}, {"dinov2-vit-g", "enc8-dinov2-g"},
      {"dinov3-vit-b16", "dinov3-b16-enc8-cosine0.5"}, {"dinov3-vit-l16", "enc8-dinov3-l16"},
      {"dinov3-vit-h16plus", "enc8-dinov3-h16plus"}, {"dinov3-vit-7b16", "enc8-dinov3-7b16"},
      {"webssl-vit-dino300m_full2b_224", "enc8-webssl300m224"}, {"webssl-vit-dino1b_full2b_224", "enc8-webssl1b224"},
      {"webssl-vit-dino2b_full2b_224", "enc8-webssl2b224"}, {"webssl-vit-dino3b_full2b_224", "enc8-webssl3b224"},
      {"pe-vit-b", "enc8-pe-b"}, {"pe-vit-l", "enc8-pe-l"}, {"pe-vit-g", "enc8-pe-g"},
      {"langpe-vit-l", "enc8-langpe-l"}, {"langpe-vit-g", "enc8-langpe-g"},
      // The reference reads spatialpe-vit-l's gFID from the langpe-l run's file; kept, so that the numbers are its.
      {"spatialpe-vit-b", "enc8-spatialpe-b"}, {"spatialpe-vit-l", "enc8-langpe-l"}, {"spatialpe-vit-g", "enc8-spatialpe-g"},
      {"cradio-vit-b", "cradio-b-enc8-coeff0.5"}, {"cradio-vit-l", "cradio-l-enc8-cosine0.5"},
      {"dino-vit-b", "dino-b-enc8-cosine0.5"}, {"clip-vit-L", "clip-l-enc8-cosine0.5"},
      {"mocov3-vit-b", "mocov3-b-enc8-cosine0.5"}, {"mocov3-vit-l", "mocov3-l-enc8-cosine0.5"},
      {"jepa-vit-h", "jepa-h-enc8-cosine0.5"}, {"mae-vit-l", "mae-l-enc8-cosine0.5"}};
  const std::string tail = "_cfg1.0-seed0-modesde-steps250.csv";
  if (model_type == "sit-xl-2") {
    const auto it = xl.find(enc);
    return it == xl.end() ? std::string() : "sit-xl-2-sdvae-" + it->second + tail;
  }
  return model_type + "-sdvae-" + enc + "-enc8-coeff0.5-loss-cosine-projlayer-mlp-100000-v1" + tail;
}

/// The gFID at `steps` and the linear-probe accuracy of each encoder from the released layout;
/// an encoder without a gFID file or row is reported and left out, as the reference does.
GfidTable read_released_stats(const fs::path& data, const std::vector<std::string>& encoders, const std::string& model_type,
                              std::int64_t steps) {
  GfidTable out;
  for (const auto& enc : encoders) {
    const std::string file = released_fid_csv(model_type, enc);
    const fs::path csv = data / "stats" / "fid" / file;
    if (file.empty() || !fs::exists(csv)) {
      std::fprintf(stderr, "irepa-metrics: %s: no gFID file (%s)\n", enc.c_str(),
                   file.empty() ? ("no released " + model_type + " run").c_str() : csv.c_str());
      continue;
    }
    const CsvTable t = read_csv_table(csv.string(), "gFID file");
    const std::size_t cs = t.col("Steps"), cf = t.col("FID");
    IREPA_CHECK(cs < t.cols.size() && cf < t.cols.size() && cf > 0, "irepa-metrics: '{}' has the columns {}, expected Steps and FID",
                csv.string(), fmt::join(t.cols, ","));
    std::optional<double> fid;
    for (const auto& [first, v] : t.rows)  // Steps may follow pandas' unnamed index column
      if (cs == 0 ? first == std::to_string(steps) : v[cs - 1] == static_cast<double>(steps)) {
        IREPA_CHECK(!fid, "irepa-metrics: '{}' has two rows for step {}", csv.string(), steps);
        fid = v[cf - 1];
      }
    if (!fid) {
      std::fprintf(stderr, "irepa-metrics: %s: %s has no row for step %lld\n", enc.c_str(), csv.c_str(), static_cast<long long>(steps));
      continue;
    }
    out[enc]["gfid"] = *fid;
    const fs::path lp = data / "stats" / "lp" / (enc + "-none-mean") / "metrics.json";
    if (fs::exists(lp)) {
      const nlohmann::json j = io::parse_json(io::read_regular_file(lp.string(), "irepa-metrics: linear-probe metrics"), lp.string());
      IREPA_CHECK(j.is_object() && j.contains("best_val_acc") && j.at("best_val_acc").is_number(),
                  "irepa-metrics: '{}' has no number 'best_val_acc'", lp.string());
      out[enc]["linear_probe"] = j.at("best_val_acc").get<double>();
    }
  }
  return out;
}

/// Opens a PNG page (plplot's cairo driver) of the given size split into nx x ny panels.
void begin_png(const std::string& path, int width, int height, int nx, int ny) {
  plsdev("pngcairo");
  plsfnam(path.c_str());
  plspage(0, 0, width, height, 0, 0);
  plscolbg(255, 255, 255);
  plscol0(1, 0, 0, 0);     // black axes and text on white
  plscol0(2, 200, 30, 30);  // red fitted lines
  plssub(nx, ny);
  plinit();
}

/// One panel: encoders as points (labelled), the least-squares line, Pearson r in the title.
void scatter_panel(const std::string& metric, const std::vector<double>& x, const std::vector<double>& y,
                   const std::vector<std::string>& names) {
  const auto [xmin, xmax] = std::minmax_element(x.begin(), x.end());
  const auto [ymin, ymax] = std::minmax_element(y.begin(), y.end());
  const double px = 0.08 * std::max(*xmax - *xmin, 1e-9), py = 0.08 * std::max(*ymax - *ymin, 1e-9);
  pladv(0);
  plvsta();
  plwind(*xmin - px, *xmax + px, *ymin - py, *ymax + py);
  plcol0(1);
  plbox("bcnst", 0, 0, "bcnstv", 0, 0);
  pllab(metric.c_str(), "gFID", fmt::format("{} vs gFID: Pearson r = {:.3f}", metric, metrics::pearson(x, y)).c_str());
  plcol0(9);  // blue points
  plpoin(static_cast<PLINT>(x.size()), x.data(), y.data(), 17);
  plcol0(1);
  plschr(0, 0.6);
  for (std::size_t i = 0; i < x.size(); ++i) plptex(x[i], y[i] + 0.3 * py, 1, 0, 0.5, names[i].c_str());
  plschr(0, 1.0);
  const auto line = metrics::fit_line(x, y);
  const double lx[2] = {*xmin - px, *xmax + px}, ly[2] = {line.slope * lx[0] + line.intercept, line.slope * lx[1] + line.intercept};
  plcol0(2);  // red fitted line
  plline(2, lx, ly);
}

/// Heat map of a [h, w] grid in [-1, 1] (cosine similarity), with the reference token marked.
void map_panel(const std::vector<double>& v, std::int64_t h, std::int64_t w, std::int64_t ref, const std::string& title) {
  pladv(0);
  plvpas(0.08, 0.92, 0.08, 0.85, 1.0);
  plwind(0, static_cast<double>(w), 0, static_cast<double>(h));
  // One filled square per token (plot y grows upwards, so grid row 0 is drawn at the top).
  for (std::int64_t r = 0; r < h; ++r)
    for (std::int64_t c = 0; c < w; ++c) {
      const double x0 = static_cast<double>(c), y0 = static_cast<double>(h - 1 - r);
      PLFLT xs[4] = {x0, x0 + 1, x0 + 1, x0}, ys[4] = {y0, y0, y0 + 1, y0 + 1};
      plcol1(std::clamp((v[static_cast<std::size_t>(r * w + c)] + 1.0) / 2.0, 0.0, 1.0));
      plfill(4, xs, ys);
    }
  plcol0(1);
  plbox("bc", 0, 0, "bc", 0, 0);
  const double mx = static_cast<double>(ref % w) + 0.5, my = static_cast<double>(h - ref / w) - 0.5;
  plpoin(1, &mx, &my, 5);
  plschr(0, 0.7);
  plmtex("t", 1.0, 0.5, 0.5, title.c_str());
  plschr(0, 1.0);
}

/// Cosine similarity of token `ref` with every token of x [T, D].
std::vector<double> cosine_map(const Tensor<double>& x, std::int64_t ref) {
  const std::int64_t T = x.size(0), D = x.size(1);
  std::vector<double> out(static_cast<std::size_t>(T));
  double nr = 0;
  for (std::int64_t d = 0; d < D; ++d) nr += x(ref, d) * x(ref, d);
  for (std::int64_t t = 0; t < T; ++t) {
    double dot = 0, nt = 0;
    for (std::int64_t d = 0; d < D; ++d) {
      dot += x(t, d) * x(ref, d);
      nt += x(t, d) * x(t, d);
    }
    out[static_cast<std::size_t>(t)] = dot / std::max(std::sqrt(nr * nt), 1e-12);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> feature_args;
  std::string masks_path, gfid_path, out_dir = "metrics_out", grid_arg;
  std::int64_t batch = 256;
  int threads = 0;
  metrics::SpatialMetricOptions o;
  std::int64_t viz_image = -1;
  double zscore_alpha = 0.6;
  CLI::App app{"irepa-metrics: spatial metrics (LDS, CDS, SRSS, RMSC) per encoder, and their correlation with gFID"};
  app.add_option("--features", feature_args, "NAME=PATH of [N, T, D] features (.npy, .safetensors or .pt); repeat per encoder");
  std::string data_dir, model_type = "sit-xl-2";
  std::int64_t fid_steps = 100000;
  app.add_option("--data", data_dir,
                 "the reference's released folder: features/<enc>.pt, masks/, stats/fid/*.csv, stats/lp/<enc>-none-mean/metrics.json");
  app.add_option("--model-type", model_type, "--data: whose gFID files (sit-xl-2: the released runs; others: the reference's pattern)")
      ->capture_default_str();
  app.add_option("--steps", fid_steps, "--data: the training step whose gFID is used")->check(CLI::PositiveNumber)->capture_default_str();
  metrics::MaskOptions mask_opt;
  app.add_option("--masks", masks_path,
                 "[N, T] foreground masks (.npy or .safetensors) aligned with the images, or a folder of PNG masks (one per "
                 "image, name order)");
  app.add_option("--mask-resolution", mask_opt.resolution, "PNG masks: resize to this square size first")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--mask-pool", mask_opt.pool, "PNG masks: max-pool cell size (grid = resolution / pool)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--mask-min-count", mask_opt.min_count, "PNG masks: keep images with at least this many fg and bg cells")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--gfid", gfid_path, "CSV 'encoder,gfid[,linear_probe]' for the correlation table");
  app.add_option("--out", out_dir, "output folder");
  app.add_option("--grid", grid_arg, "token grid HxW (default: square, sqrt(T) x sqrt(T))");
  app.add_option("--batch", batch, "images per batch")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads (0: all)");
  app.add_option("--lds-far", o.lds_far, "LDS: far pairs have distance >= this")->check(CLI::PositiveNumber);
  app.add_option("--cds-dmax", o.cds_dmax, "CDS: fit over distances 1..dmax")->check(CLI::PositiveNumber);
  app.add_option("--srss-near", o.srss_near_max, "SRSS: positives at distance 1..near")->check(CLI::PositiveNumber);
  app.add_option("--srss-far", o.srss_far, "SRSS: negatives at distance >= far")->check(CLI::PositiveNumber);
  app.add_option("--viz", viz_image, "image index: write spatialnorm_<encoder>.png (raw vs z-scored similarity maps)");
  app.add_option("--zscore-alpha", zscore_alpha, "spatial z-score: z <- (z - alpha mean_T z) / (std_T z + 1e-6)");
  CLI11_PARSE(app, argc, argv);

  try {
    {  // before any work: an output path under a regular file or without permission fails now, not at the end
      std::error_code ec;
      fs::create_directories(out_dir, ec);
      IREPA_CHECK(!ec && fs::is_directory(out_dir), "irepa-metrics: --out '{}' cannot be a folder: {}", out_dir,
                  ec ? ec.message() : std::string("a file of that name is in the way"));
    }
    CpuContext ctx(threads);
    std::optional<GfidTable> released;
    if (!data_dir.empty()) {
      const fs::path data(data_dir);
      IREPA_CHECK(fs::is_directory(data), "irepa-metrics: --data '{}' is not a folder", data_dir);
      std::vector<std::string> encoders;
      if (feature_args.empty()) {
        IREPA_CHECK(fs::is_directory(data / "features"), "irepa-metrics: --data '{}' has no features/ folder", data_dir);
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(data / "features")) {
          const auto ext = e.path().extension();
          if (e.is_regular_file() && (ext == ".pt" || ext == ".pth" || ext == ".npy" || ext == ".safetensors")) files.push_back(e.path());
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files) feature_args.push_back(f.stem().string() + "=" + f.string());
      }
      for (const auto& a : feature_args) encoders.push_back(a.substr(0, a.find('=')));
      if (masks_path.empty() && fs::is_directory(data / "masks")) masks_path = (data / "masks").string();
      if (gfid_path.empty()) released = read_released_stats(data, encoders, model_type, fid_steps);
    }
    IREPA_CHECK(!feature_args.empty(), "irepa-metrics: no features: give --features NAME=PATH or --data with a features/ folder");
    std::optional<RowSource> masks;
    std::optional<metrics::GridMasks> png_masks;
    if (!masks_path.empty() && fs::is_directory(masks_path)) {
      png_masks = metrics::load_png_masks(masks_path, mask_opt);
      std::fprintf(stderr, "masks: kept %zu of %zu images (>= %lld foreground and background cells of %lld)\n",
                   png_masks->kept.size(), png_masks->files.size(), static_cast<long long>(mask_opt.min_count),
                   static_cast<long long>(png_masks->masks.size(1)));
      IREPA_CHECK(!png_masks->kept.empty(), "irepa-metrics: no mask in '{}' passes the foreground/background filter", masks_path);
    } else if (!masks_path.empty()) {
      masks.emplace(masks_path);
    }
    std::vector<std::pair<std::string, EncoderResult>> results;
    for (const auto& arg : feature_args) {
      const auto eq = arg.find('=');
      IREPA_CHECK(eq != std::string::npos && eq > 0, "irepa-metrics: --features '{}' is not NAME=PATH", arg);
      const std::string name = arg.substr(0, eq);
      RowSource feats(arg.substr(eq + 1));
      IREPA_CHECK(feats.shape().rank() == 3, "irepa-metrics: {} features have shape {}, expected [N, T, D]", name,
                  feats.shape().str());
      const std::int64_t N = feats.shape()[0], T = feats.shape()[1];
      std::int64_t gh = 0, gw = 0;
      if (grid_arg.empty()) {
        gh = gw = static_cast<std::int64_t>(std::lround(std::sqrt(static_cast<double>(T))));
        IREPA_CHECK(gh * gw == T, "irepa-metrics: {} has T = {} tokens, not a square; give --grid HxW", name, T);
      } else {
        IREPA_CHECK(std::sscanf(grid_arg.c_str(), "%ldx%ld", &gh, &gw) == 2 && gh * gw == T,
                    "irepa-metrics: --grid {} does not hold the {} tokens of {}", grid_arg, T, name);
      }
      if (masks)
        IREPA_CHECK(masks->shape() == Shape({N, T}), "irepa-metrics: masks have shape {}, expected [{}, {}] to match {}",
                    masks->shape().str(), N, T, name);
      std::vector<std::int64_t> images;  // the images measured: all, or those whose PNG mask was kept
      if (png_masks) {
        IREPA_CHECK(static_cast<std::int64_t>(png_masks->files.size()) == N,
                    "irepa-metrics: {} PNG masks for the {} images of {} (one mask per image, in name order)",
                    png_masks->files.size(), N, name);
        IREPA_CHECK(png_masks->masks.size(1) == T, "irepa-metrics: PNG masks give {} grid cells, {} has {} tokens",
                    png_masks->masks.size(1), name, T);
        images = png_masks->kept;
      } else {
        for (std::int64_t i = 0; i < N; ++i) images.push_back(i);
      }
      const auto n_images = static_cast<std::int64_t>(images.size());
      metrics::GridDistances grid(gh, gw, metrics::required_radius(o));
      std::vector<double> lds, cds, srss, rmsc;
      for (std::int64_t b = 0; b < n_images; b += batch) {
        const std::int64_t n = std::min(batch, n_images - b);
        const std::vector<std::int64_t> idx(images.begin() + b, images.begin() + b + n);
        auto x = feats.gather<float>(idx);
        Tensor<std::uint8_t> m;
        if (masks) m = masks->gather<std::uint8_t>(idx);
        if (png_masks) m = Tensor<std::uint8_t>::copy_of(png_masks->masks.cview().slice(0, b, n));
        const auto r = metrics::spatial_metrics<float>(ctx, x, grid, m.cview(), o);
        lds.insert(lds.end(), r.lds.begin(), r.lds.end());
        cds.insert(cds.end(), r.cds.begin(), r.cds.end());
        srss.insert(srss.end(), r.srss.begin(), r.srss.end());
        rmsc.insert(rmsc.end(), r.rmsc.begin(), r.rmsc.end());
        std::fprintf(stderr, "\r%s: %lld / %lld images", name.c_str(), static_cast<long long>(b + n), static_cast<long long>(n_images));
      }
      std::fprintf(stderr, "\n");
      if (viz_image >= 0) {
        IREPA_CHECK(viz_image < N, "irepa-metrics: --viz {} but {} has {} images", viz_image, name, N);
        auto x = feats.rows<double>(viz_image, 1);  // [1, T, D]
        const std::int64_t D = x.size(2);
        Tensor<double> mean(Shape{1, D}), sd(Shape{1, D}), z(Shape{T, D});
        ops::token_mean_std_forward<double>(ctx, x, mean.view(), sd.view());
        for (std::int64_t t = 0; t < T; ++t)
          for (std::int64_t d = 0; d < D; ++d) z(t, d) = (x(0, t, d) - zscore_alpha * mean(0, d)) / (sd(0, d) + 1e-6);
        const auto raw = Tensor<double>::copy_of(x.cview().reshape({T, D}));
        // Reference tokens spread over the grid (quarter points and the centre).
        const std::vector<std::int64_t> refs{(gh / 4) * gw + gw / 4, (gh / 2) * gw + gw / 2, (3 * gh / 4) * gw + 3 * gw / 4,
                                             (gh / 4) * gw + 3 * gw / 4};
        const std::string png = (fs::path(out_dir) / ("spatialnorm_" + name + ".png")).string();
        begin_png(png, 560, 270 * static_cast<int>(refs.size()), 2, static_cast<int>(refs.size()));
        plscmap1n(256);
        const PLFLT pos[3] = {0, 0.5, 1}, r[3] = {0.23, 0.87, 0.70}, g[3] = {0.30, 0.87, 0.02}, b[3] = {0.75, 0.87, 0.15};
        plscmap1l(1, 3, pos, r, g, b, nullptr);  // blue - white - red, like the paper's figures
        for (auto ref : refs) {
          map_panel(cosine_map(raw, ref), gh, gw, ref, fmt::format("{}: token ({}, {}), raw", name, ref / gw, ref % gw));
          map_panel(cosine_map(z, ref), gh, gw, ref, fmt::format("z-scored, alpha {}", zscore_alpha));
        }
        plend();
        std::printf("wrote %s\n", png.c_str());
      }
      std::int64_t valid = 0;
      for (double v : srss) valid += !std::isnan(v);
      using M = metrics::SpatialMetricsResult;
      results.push_back({name, {M::mean(lds), M::mean(cds), M::mean(srss), M::mean(rmsc), n_images, valid}});
    }

    std::ostringstream csv, md;  // written whole at the end (atomically): a report is never half-written
    csv << "encoder,images,lds,cds,srss,srss_valid_images,rmsc\n";
    md << "| encoder | images | LDS | CDS | SRSS | SRSS valid | RMSC |\n|---|---|---|---|---|---|---|\n";
    for (const auto& [name, r] : results) {
      csv << name << ',' << r.images << ',' << fmt_num(r.lds) << ',' << fmt_num(r.cds) << ',' << fmt_num(r.srss) << ','
          << r.srss_valid << ',' << fmt_num(r.rmsc) << '\n';
      md << "| " << name << " | " << r.images << " | " << fmt_num(r.lds) << " | " << fmt_num(r.cds) << " | "
         << fmt_num(r.srss) << " | " << r.srss_valid << " | " << fmt_num(r.rmsc) << " |\n";
    }
    io::write_file_atomic((fs::path(out_dir) / "metrics.csv").string(), csv.str(), "irepa-metrics");
    io::write_file_atomic((fs::path(out_dir) / "metrics.md").string(), md.str(), "irepa-metrics");
    std::printf("wrote %s and %s\n", (fs::path(out_dir) / "metrics.csv").c_str(), (fs::path(out_dir) / "metrics.md").c_str());

    if (!gfid_path.empty() || released) {
      const GfidTable table = released ? *released : read_csv(gfid_path);
      if (released) gfid_path = fmt::format("{}/stats/fid (step {})", data_dir, fid_steps);
      // Each metric against gFID over the encoders that have both (the linear probe may be known
      // for only some of them, as in the released stats; SRSS is NaN without masks).
      struct Series {
        std::vector<double> x, gfid;
        std::vector<std::string> names;
      };
      std::map<std::string, Series> cols;
      std::size_t with_gfid = 0;
      for (const auto& [name, r] : results) {
        auto it = table.find(name);
        if (it == table.end() || !std::isfinite(it->second.at("gfid"))) {
          std::fprintf(stderr, "irepa-metrics: %s has no gFID in %s; left out of the correlations\n", name.c_str(),
                       gfid_path.c_str());
          continue;
        }
        ++with_gfid;
        const double g = it->second.at("gfid");
        auto add = [&](const std::string& metric, double x) {
          Series& c = cols[metric];
          if (!std::isfinite(x)) return;  // SRSS without masks, a probe not run
          c.x.push_back(x), c.gfid.push_back(g), c.names.push_back(name);
        };
        add("LDS", r.lds), add("CDS", r.cds), add("SRSS", r.srss), add("RMSC", r.rmsc);
        if (const auto lp = it->second.find("linear_probe"); lp != it->second.end()) add("linear probe", lp->second);
      }
      IREPA_CHECK(with_gfid >= 3, "irepa-metrics: only {} encoders have a gFID; correlations need at least 3", with_gfid);
      std::ostringstream ccsv, cmd;
      ccsv << "metric,pearson,spearman,kendall,encoders\n";
      cmd << "| metric vs gFID | Pearson r | Spearman rho | Kendall tau | encoders |\n|---|---|---|---|---|\n";
      std::vector<std::pair<std::string, const Series*>> panels;
      for (const auto& [metric, c] : cols) {
        if (c.x.size() < 3) {
          std::fprintf(stderr, "irepa-metrics: %s is known for %zu encoders; its correlation needs 3\n", metric.c_str(), c.x.size());
          continue;
        }
        const double p = metrics::pearson(c.x, c.gfid), sp = metrics::spearman(c.x, c.gfid), k = metrics::kendall_tau_b(c.x, c.gfid);
        ccsv << metric << ',' << fmt_num(p) << ',' << fmt_num(sp) << ',' << fmt_num(k) << ',' << c.x.size() << '\n';
        cmd << "| " << metric << " | " << fmt_num(p) << " | " << fmt_num(sp) << " | " << fmt_num(k) << " | " << c.x.size() << " |\n";
        panels.emplace_back(metric, &c);
      }
      io::write_file_atomic((fs::path(out_dir) / "correlations.csv").string(), ccsv.str(), "irepa-metrics");
      io::write_file_atomic((fs::path(out_dir) / "correlations.md").string(), cmd.str(), "irepa-metrics");
      const int nx = 2, ny = static_cast<int>((panels.size() + 1) / 2);
      const std::string png = (fs::path(out_dir) / "correlations.png").string();
      begin_png(png, 1000, 420 * ny, nx, ny);
      for (const auto& [metric, c] : panels) scatter_panel(metric, c->x, c->gfid, c->names);
      plend();
      std::printf("wrote %s, %s and %s\n", (fs::path(out_dir) / "correlations.csv").c_str(),
                  (fs::path(out_dir) / "correlations.md").c_str(), png.c_str());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // a full disk, an output path under a file, memory: one line, status 1
    std::fprintf(stderr, "irepa-metrics: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "irepa-metrics: stopped by an unknown exception\n");
    return 1;
  }
  return 0;
}
