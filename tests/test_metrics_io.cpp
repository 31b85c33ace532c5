// Correlation coefficients (hand-computed values) and .npy reading and writing.

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "irepa/io/npy.hpp"
#include "irepa/metrics/correlation.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

TEST_CASE("Pearson, Spearman, Kendall tau-b and the fitted line", "[metrics][correlation]") {
  const std::vector<double> x{1, 2, 3, 4, 5}, y{5, 6, 7, 8, 7};
  // By hand: Pearson 6 / sqrt(52); Spearman on ranks y = [1, 2, 3.5, 5, 3.5] -> 8 / sqrt(95);
  // Kendall: 8 concordant, 1 discordant, 1 pair tied in y -> 7 / sqrt(9 * 10).
  CHECK(std::abs(metrics::pearson(x, y) - 6 / std::sqrt(52.0)) < 1e-15);
  CHECK(std::abs(metrics::spearman(x, y) - 8 / std::sqrt(95.0)) < 1e-15);
  CHECK(std::abs(metrics::kendall_tau_b(x, y) - 7 / std::sqrt(90.0)) < 1e-15);
  const auto line = metrics::fit_line(x, y);
  CHECK(std::abs(line.slope - 0.6) < 1e-15);
  CHECK(std::abs(line.intercept - 4.8) < 1e-14);
  // Monotone but not linear: rank correlations are exactly -1, Pearson is not.
  const std::vector<double> z{1, 8, 27, 64, 125}, w{-1, -2, -4, -8, -16};
  CHECK(metrics::spearman(z, w) == Approx(-1.0).epsilon(1e-15));
  CHECK(metrics::kendall_tau_b(z, w) == Approx(-1.0).epsilon(1e-15));
  CHECK(metrics::pearson(z, w) > -1.0);
  CHECK(std::isnan(metrics::pearson(x, {3, 3, 3, 3, 3})));
  REQUIRE_IREPA_ERROR(metrics::pearson(x, {1, 2}), "5 and 2");
}

TEST_CASE(".npy round trip and errors", "[io][npy]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_npy_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto x = test::randn<float>({4, 6, 3});
  io::write_npy<float>((dir / "x.npy").string(), x);
  io::NpyFile f((dir / "x.npy").string());
  CHECK(f.dtype() == DType::F32);
  CHECK(f.shape() == Shape{4, 6, 3});
  auto rows = f.load_rows<float>(1, 2);
  CHECK(rows.shape() == Shape{2, 6, 3});
  for (std::int64_t i = 0; i < rows.numel(); ++i) REQUIRE(rows[i] == x[18 + i]);
  auto all = f.load<double>();
  CHECK(all[71] == static_cast<double>(x[71]));
  REQUIRE_IREPA_ERROR(f.load_rows<float>(3, 2), "rows [3, 5)", "[4, 6, 3]");
  REQUIRE_IREPA_ERROR(f.load<std::int64_t>(), "F32", "I64");

  auto write_raw = [&](const std::string& name, const std::string& header, std::size_t data_bytes) {
    std::ofstream o(dir / name, std::ios::binary);
    const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(header.size()), 0};
    o.write(reinterpret_cast<const char*>(pre), 10);
    o << header << std::string(data_bytes, '\0');
    return (dir / name).string();
  };
  REQUIRE_IREPA_ERROR(io::NpyFile(write_raw("f.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", 24)), "Fortran");
  REQUIRE_IREPA_ERROR(io::NpyFile(write_raw("c.npy", "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }\n", 16)), "'<c8'");
  REQUIRE_IREPA_ERROR(io::NpyFile(write_raw("t.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (5, 2), }\n", 40)), "truncated",
                      "80 bytes");
  {
    std::ofstream o(dir / "bad.npy");
    o << "not numpy at all";
  }
  REQUIRE_IREPA_ERROR(io::NpyFile((dir / "bad.npy").string()), "bad magic");
  fs::remove_all(dir);
}
