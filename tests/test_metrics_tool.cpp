// irepa-metrics end to end: encoders whose features have more or less spatial structure, a
// gFID table that falls as the structure grows, and the tables the tool writes.

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "irepa/io/npy.hpp"
#include "irepa/io/png.hpp"
#include "irepa/metrics/masks.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/metrics/spatial.hpp"
#include "tool_test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {
using test::slurp;
/// Features on an 8x8 grid: a smooth field of strength s plus unit noise.
Tensor<float> features(std::int64_t N, double s) {
  auto x = test::randn<float>({N, 64, 12});
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t t = 0; t < 64; ++t)
      for (std::int64_t d = 0; d < 12; ++d) x(n, t, d) += static_cast<float>(s * std::sin(0.5 * static_cast<double>(t / 8 + (t % 8) * (d % 3)) + d));
  return x;
}
}  // namespace

TEST_CASE("irepa-metrics writes per-encoder metrics and their correlation with gFID", "[metrics][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_metrics_tool_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::int64_t N = 10;
  const std::vector<std::pair<std::string, double>> encoders{{"flat", 0.0}, {"weak", 0.7}, {"mid", 1.5}, {"strong", 3.0}};
  std::string args;
  std::vector<double> lds_expected;
  CpuContext ctx(2);
  Tensor<std::uint8_t> masks(Shape{N, 64});
  for (std::int64_t i = 0; i < masks.numel(); ++i) masks[i] = (i % 64) / 8 >= 2 && (i % 64) / 8 < 6;
  io::write_npy<std::uint8_t>((dir / "masks.npy").string(), masks);
  for (const auto& [name, s] : encoders) {
    auto x = features(N, s);
    if (name == "mid") {  // one encoder from safetensors, the rest from .npy
      io::SafeTensorsWriter w;
      w.add("features", x);
      w.write((dir / (name + ".safetensors")).string());
      args += " --features " + name + "=" + (dir / (name + ".safetensors")).string();
    } else {
      io::write_npy<float>((dir / (name + ".npy")).string(), x);
      args += " --features " + name + "=" + (dir / (name + ".npy")).string();
    }
    auto r = metrics::spatial_metrics<float>(ctx, x, metrics::GridDistances(8, 8, 8), masks);
    lds_expected.push_back(metrics::SpatialMetricsResult::mean(r.lds));
  }
  {
    std::ofstream g(dir / "gfid.csv");
    g << "encoder,gfid,linear_probe\nflat,30,70\nweak,20,60\nmid,12,75\nstrong,8,65\nnot_measured,5,50\n";
  }
  const std::string cmd = std::string(IREPA_METRICS_TOOL) + args + " --masks " + (dir / "masks.npy").string() +
                          " --gfid " + (dir / "gfid.csv").string() + " --batch 3 --viz 2 --out " + (dir / "out").string() + " 2>/dev/null";
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);

  const std::string table = slurp(dir / "out" / "metrics.csv");
  INFO(table);
  std::istringstream in(table);
  std::string line;
  std::getline(in, line);
  CHECK(line == "encoder,images,lds,cds,srss,srss_valid_images,rmsc");
  for (std::size_t e = 0; e < encoders.size(); ++e) {
    REQUIRE(std::getline(in, line));
    CHECK(line.rfind(encoders[e].first + ",10,", 0) == 0);
    const double lds = std::stod(line.substr(line.find(",10,") + 4));
    CHECK(std::abs(lds - lds_expected[e]) < 1e-5);  // batches of 3 give the same means
  }
  CHECK(lds_expected.front() < lds_expected.back());
  const std::string corr = slurp(dir / "out" / "correlations.csv");
  INFO(corr);
  // gFID falls as the structure grows: LDS and gFID are perfectly anti-ordered.
  CHECK(corr.find("LDS,") != std::string::npos);
  std::istringstream cin(corr);
  bool saw_lds = false, saw_probe = false;
  while (std::getline(cin, line)) {
    if (line.rfind("LDS,", 0) == 0) {
      saw_lds = true;
      std::vector<double> v;
      std::istringstream f(line.substr(4));
      for (std::string s; std::getline(f, s, ',');) v.push_back(std::stod(s));
      CHECK(v[0] < -0.8);                      // Pearson
      CHECK(v[1] == Approx(-1.0));             // Spearman
      CHECK(v[2] == Approx(-1.0));             // Kendall
      CHECK(v[3] == 4);                        // encoders (not_measured has no features)
    }
    saw_probe = saw_probe || line.rfind("linear probe,", 0) == 0;
  }
  CHECK(saw_lds);
  CHECK(saw_probe);
  CHECK(fs::exists(dir / "out" / "metrics.md"));
  CHECK(fs::exists(dir / "out" / "correlations.md"));
  // The figures are PNG files of some substance (their pictures were looked at by hand).
  for (const char* png : {"correlations.png", "spatialnorm_strong.png", "spatialnorm_flat.png"}) {
    INFO(png);
    const std::string bytes = slurp(dir / "out" / png);
    CHECK(bytes.size() > 5000);
    CHECK(bytes.compare(1, 3, "PNG") == 0);
  }

  // Bad input is an error naming it.
  CHECK(std::system((std::string(IREPA_METRICS_TOOL) + " --features broken=" + (dir / "gfid.csv").string() + " --out " +
                     (dir / "out2").string() + " 2>/dev/null")
                        .c_str()) != 0);
  fs::remove_all(dir);
}

TEST_CASE("irepa-metrics with a folder of PNG masks keeps each mask with its own image", "[metrics][tool][masks]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_metrics_png_" + std::to_string(::getpid()));
  fs::create_directories(dir / "masks");
  // 6 images on the 16x16 grid of 256x256 masks; images 1 and 4 have too little foreground and
  // are dropped, so a tool that sliced the first 4 feature rows would pair masks with the wrong images.
  const std::int64_t N = 6, T = 256, D = 8;
  auto x = test::randn<float>({N, T, D});
  for (std::int64_t n = 0; n < N; ++n)  // foreground tokens share a direction per image: SRSS is informative
    for (std::int64_t t = 0; t < T; ++t)
      if ((t / 16) >= 2 + n && (t / 16) < 12) x(n, t, n % D) += 4.0f;
  for (std::int64_t n = 0; n < N; ++n) {
    Tensor<std::uint8_t> m(Shape{300, 280});  // resized to 256x256 by the tool, bicubic
    m.fill(0);
    const bool small = n == 1 || n == 4;
    for (std::int64_t y = 0; y < 300; ++y)
      for (std::int64_t c = 0; c < 280; ++c) {
        const bool fg = small ? (y < 30 && c < 30) : (y * 16 / 300 >= 2 + n && y * 16 / 300 < 12);
        if (fg) m(y, c) = static_cast<std::uint8_t>(200 + n);
      }
    io::write_png((dir / "masks" / ("img_" + std::to_string(n) + ".png")).string(), m);
  }
  io::write_npy<float>((dir / "enc.npy").string(), x);
  const auto gm = metrics::load_png_masks((dir / "masks").string());
  REQUIRE(gm.kept == std::vector<std::int64_t>{0, 2, 3, 5});
  Tensor<float> kept_x(Shape{4, T, D});
  for (std::int64_t k = 0; k < 4; ++k)
    std::copy_n(x.data() + gm.kept[static_cast<std::size_t>(k)] * T * D, T * D, kept_x.data() + k * T * D);
  CpuContext ctx(2);
  const auto want = metrics::spatial_metrics<float>(ctx, kept_x, metrics::GridDistances(16, 16, 8), gm.masks);
  const double srss = metrics::SpatialMetricsResult::mean(want.srss);
  REQUIRE(std::isfinite(srss));

  const std::string cmd = std::string(IREPA_METRICS_TOOL) + " --features enc=" + (dir / "enc.npy").string() + " --masks " +
                          (dir / "masks").string() + " --batch 3 --out " + (dir / "out").string() + " 2>/dev/null";
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::istringstream in(slurp(dir / "out" / "metrics.csv"));
  std::string line;
  std::getline(in, line);
  REQUIRE(std::getline(in, line));
  INFO(line);
  REQUIRE(line.rfind("enc,4,", 0) == 0);  // 4 images measured
  std::vector<std::string> f;
  for (std::stringstream ss(line); std::getline(ss, line, ',');) f.push_back(line);
  REQUIRE(f.size() == 7);
  CHECK(std::stod(f[4]) == Approx(srss).epsilon(1e-5));
  CHECK(std::stoll(f[5]) == 4);

  // As many masks as images are required: one PNG too many is an error.
  fs::copy_file(dir / "masks" / "img_0.png", dir / "masks" / "img_9.png");
  CHECK(std::system(cmd.c_str()) != 0);
  fs::remove_all(dir);
}

TEST_CASE("irepa-metrics reads the released features as torch.save files (data/features/<enc>.pt)", "[metrics][tool][torch]") {
  // tests/data/torch/features.pt is a bare [6, 16, 8] tensor written by torch 1.13; features.npy holds the same numbers.
  const fs::path data = fs::path(IREPA_TEST_DATA_DIR) / "torch";
  const fs::path dir = fs::temp_directory_path() / ("irepa_metrics_pt_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string tables[2];
  int k = 0;
  for (const char* file : {"features.pt", "features.npy"}) {
    const fs::path out = dir / ("out" + std::to_string(k));
    const std::string cmd = std::string(IREPA_METRICS_TOOL) + " --features enc=" + (data / file).string() + " --batch 4 --out " +
                            out.string() + " > " + (dir / "log.txt").string() + " 2>&1";
    INFO(cmd << "\n" << slurp(dir / "log.txt"));
    REQUIRE(std::system(cmd.c_str()) == 0);
    tables[k++] = slurp(out / "metrics.csv");
  }
  INFO(tables[0]);
  CHECK(tables[0].find("enc,") != std::string::npos);
  CHECK(tables[0] == tables[1]);
  fs::remove_all(dir);
}

TEST_CASE("irepa-metrics --data reads the released layout: features/*.pt, stats/fid/*.csv, stats/lp/*/metrics.json", "[metrics][tool][torch]") {
  // Four encoders of the released sit-xl-2 runs: one as the torch.save fixture ([6, 16, 8]),
  // three as .npy of that shape. Their gFID at 100K steps sits in the reference's CSV files
  // (one with pandas' index column), the linear-probe accuracy of three in metrics.json files.
  const fs::path dir = fs::temp_directory_path() / ("irepa_metrics_released_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const fs::path data = dir / "data";
  fs::create_directories(data / "features");
  fs::copy_file(fs::path(IREPA_TEST_DATA_DIR) / "torch" / "features.pt", data / "features" / "dinov2-vit-b.pt");
  const std::vector<std::string> encs{"clip-vit-L", "dinov2-vit-b", "mae-vit-l", "pe-vit-b"};  // name order
  const std::vector<std::string> runs{"clip-l-enc8-cosine0.5", "enc8-dinov2-b", "mae-l-enc8-cosine0.5", "enc8-pe-b"};
  const auto fids = test::rand_uniform<double>(Shape{4}, 5.0, 40.0), lps = test::rand_uniform<double>(Shape{4}, 50.0, 85.0);
  std::ostringstream gfid_csv;
  gfid_csv << "encoder,gfid,linear_probe\n";
  std::string features_args;
  for (std::size_t e = 0; e < encs.size(); ++e) {
    const auto i = static_cast<std::int64_t>(e);
    if (encs[e] != "dinov2-vit-b") {
      auto x = test::randn<float>({6, 16, 8});
      for (std::int64_t k = 0; k < x.numel(); ++k) x[k] += static_cast<float>(i * std::sin(0.7 * static_cast<double>((k / 8) % 16)));
      io::write_npy<float>((data / "features" / (encs[e] + ".npy")).string(), x);
      features_args += " --features " + encs[e] + "=" + (data / "features" / (encs[e] + ".npy")).string();
    } else {
      features_args += " --features " + encs[e] + "=" + (data / "features" / "dinov2-vit-b.pt").string();
    }
    fs::create_directories(data / "stats" / "fid");
    std::ofstream csv(data / "stats" / "fid" / ("sit-xl-2-sdvae-" + runs[e] + "_cfg1.0-seed0-modesde-steps250.csv"));
    const std::string fid = fmt::format("{:.17g}", fids[i]);
    if (e == 2)
      csv << ",Steps,FID,sFID,IS\n0,50000,61.5,9.1,20.2\n1,100000," << fid << ",8.2,30.5\n";
    else
      csv << "Steps,FID,sFID,IS\n50000,61.5,9.1,20.2\n100000," << fid << ",8.2,30.5\n400000,3.1,4.2,200.1\n";
    std::string lp = "nan";
    if (e != 3) {
      lp = fmt::format("{:.17g}", lps[i]);
      fs::create_directories(data / "stats" / "lp" / (encs[e] + "-none-mean"));
      std::ofstream(data / "stats" / "lp" / (encs[e] + "-none-mean") / "metrics.json") << "{\"best_val_acc\": " << lp << ", \"epochs\": 90}";
    }
    gfid_csv << encs[e] << ',' << fid << ',' << lp << '\n';
  }
  { std::ofstream(dir / "gfid.csv") << gfid_csv.str(); }
  auto run = [&](const std::string& args, const fs::path& out) {
    const std::string cmd = std::string(IREPA_METRICS_TOOL) + args + " --batch 4 --out " + out.string() + " > " + (dir / "log.txt").string() + " 2>&1";
    INFO(cmd << "\n" << slurp(dir / "log.txt"));
    return std::system(cmd.c_str());
  };
  REQUIRE(run(" --data " + data.string() + " --model-type sit-xl-2 --steps 100000", dir / "released") == 0);
  REQUIRE(run(features_args + " --gfid " + (dir / "gfid.csv").string(), dir / "explicit") == 0);
  // The released layout gives exactly the tables of the same numbers passed explicitly.
  const std::string corr = slurp(dir / "released" / "correlations.csv");
  INFO(corr);
  CHECK(corr == slurp(dir / "explicit" / "correlations.csv"));
  CHECK(slurp(dir / "released" / "metrics.csv") == slurp(dir / "explicit" / "metrics.csv"));
  CHECK(corr.find("LDS,") != std::string::npos);
  CHECK(corr.find("linear probe,") != std::string::npos);
  CHECK(corr.find(",3\n") != std::string::npos);  // the linear probe over the three encoders that have it
  CHECK(corr.find(",4\n") != std::string::npos);  // the metrics over all four

  // A step with no row leaves every encoder out: too few for correlations, and the log says why.
  CHECK(run(" --data " + data.string() + " --steps 123", dir / "nostep") != 0);
  CHECK(slurp(dir / "log.txt").find("has no row for step 123") != std::string::npos);
  // A damaged gFID file is an error naming it.
  { std::ofstream(data / "stats" / "fid" / ("sit-xl-2-sdvae-" + runs[0] + "_cfg1.0-seed0-modesde-steps250.csv")) << "Steps,FID\n100000,abc\n"; }
  CHECK(run(" --data " + data.string(), dir / "bad") != 0);
  CHECK(slurp(dir / "log.txt").find("'abc' (FID) is not a number") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("irepa-metrics refuses an output folder it cannot make before any work: one line, status 1", "[metrics][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_metrics_out_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  io::write_npy<float>((dir / "f.npy").string(), features(4, 1.0));
  {
    std::ofstream b(dir / "blocker");
    b << "a regular file the output must not replace\n";
  }
  // --out under a regular file, and --out naming the file itself.
  for (const fs::path& out : {dir / "blocker" / "out", dir / "blocker"}) {
    const std::string cmd = std::string(IREPA_METRICS_TOOL) + " --features f=" + (dir / "f.npy").string() + " --out " +
                            out.string() + " >" + (dir / "stdout").string() + " 2>" + (dir / "stderr").string();
    INFO(cmd);
    const int status = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(status));  // not a signal: no abort, no core dump
    CHECK(WEXITSTATUS(status) == 1);
    const std::string err = slurp(dir / "stderr");
    INFO(err);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK(err.find("--out '" + out.string() + "'") != std::string::npos);
    CHECK(slurp(dir / "stdout").empty());  // refused before any encoder was measured
    CHECK(slurp(dir / "blocker") == "a regular file the output must not replace\n");
  }
  fs::remove_all(dir);
}
