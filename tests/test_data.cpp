// Data: idx files through zlib (the real Fashion-MNIST from Debian's package, and broken files),
// and the deterministic per-epoch shuffle.

#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "irepa/data/fashion_mnist.hpp"
#include "irepa/data/sampler.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {
void write_gz(const fs::path& p, const std::vector<std::uint8_t>& bytes) {
  gzFile f = gzopen(p.string().c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}
std::vector<std::uint8_t> idx_header(std::uint8_t type, std::vector<std::uint32_t> dims) {
  std::vector<std::uint8_t> h{0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<std::uint8_t>(d >> s));
  return h;
}
}  // namespace

TEST_CASE("Fashion-MNIST from Debian's package: 60000 + 10000 balanced images of 28x28", "[data]") {
  if (!fs::exists(data::kFashionMnistDir)) {
    WARN("dataset-fashion-mnist is not installed (scripts/setup.sh installs it); SKIPPING");
    return;
  }
  for (auto [split, n] : {std::pair{"train", 60000}, std::pair{"test", 10000}}) {
    const auto d = data::FashionMnist::load(data::kFashionMnistDir, split);
    REQUIRE(d.size() == n);
    CHECK(d.images.shape() == Shape{n, 28, 28});
    std::vector<std::int64_t> per_class(10, 0);
    for (std::int64_t i = 0; i < n; ++i) ++per_class[static_cast<std::size_t>(d.labels[i])];
    for (auto c : per_class) CHECK(c == n / 10);
    std::int64_t dark = 0, bright = 0;
    for (std::int64_t i = 0; i < d.images.numel(); ++i) dark += d.images[i] == 0, bright += d.images[i] > 200;
    CHECK(dark > d.images.numel() / 3);  // mostly black background, some bright cloth
    CHECK(bright > d.images.numel() / 50);
  }
}

TEST_CASE("idx files: round trip, and truncated, corrupt or mis-sized files are errors", "[data]") {
  const auto dir = fs::temp_directory_path() / ("irepa_idx_" + std::to_string(test::rng().seed()));
  fs::create_directories(dir);
  auto bytes = idx_header(0x08, {3, 2, 5});
  Tensor<std::int64_t> v(Shape{30});
  test::rng().randint(v.view(), 0, 256);
  for (std::int64_t i = 0; i < 30; ++i) bytes.push_back(static_cast<std::uint8_t>(v[i]));
  write_gz(dir / "ok.gz", bytes);
  const auto t = data::read_idx_u8((dir / "ok.gz").string());
  REQUIRE(t.shape() == Shape{3, 2, 5});
  for (std::int64_t i = 0; i < 30; ++i) CHECK(t[i] == v[i]);

  auto short_data = bytes;
  short_data.pop_back();
  write_gz(dir / "short.gz", short_data);
  REQUIRE_IREPA_ERROR(data::read_idx_u8((dir / "short.gz").string()), "short.gz", "declares 30 elements but holds 29");
  auto wrong_type = bytes;
  wrong_type[2] = 0x0D;
  write_gz(dir / "float.gz", wrong_type);
  REQUIRE_IREPA_ERROR(data::read_idx_u8((dir / "float.gz").string()), "element type 0x0d", "expected 0x08");
  // A gzip stream cut in half.
  const auto full = fs::file_size(dir / "ok.gz");
  fs::copy_file(dir / "ok.gz", dir / "cut.gz");
  fs::resize_file(dir / "cut.gz", full / 2);
  REQUIRE_IREPA_ERROR(data::read_idx_u8((dir / "cut.gz").string()), "cut.gz");
  REQUIRE_IREPA_ERROR(data::FashionMnist::load(dir.string(), "train"), "not found", "dataset-fashion-mnist");
  REQUIRE_IREPA_ERROR(data::FashionMnist::load(dir.string(), "val"), "'val'", "train or test");
  fs::remove_all(dir);
}

TEST_CASE("epoch permutations: a pure function of (seed, epoch), different across epochs", "[data]") {
  const std::uint64_t seed = test::rng().seed();
  const auto a = data::epoch_permutation(1000, seed, 3), b = data::epoch_permutation(1000, seed, 3);
  const auto c = data::epoch_permutation(1000, seed, 4), d = data::epoch_permutation(1000, seed + 1, 3);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a != d);
  CHECK(std::set<std::int64_t>(a.begin(), a.end()).size() == 1000);
  CHECK(*std::min_element(a.begin(), a.end()) == 0);
  CHECK(*std::max_element(a.begin(), a.end()) == 999);
  std::int64_t fixed = 0;
  for (std::size_t i = 0; i < a.size(); ++i) fixed += a[i] == static_cast<std::int64_t>(i);
  CHECK(fixed < 10);  // a shuffle, not the identity (expected ~1 fixed point)
  CHECK(data::epoch_and_offset(2345, 1000) == std::pair<std::uint64_t, std::int64_t>{2, 345});
}
