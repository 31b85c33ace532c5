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

// ---------------------------------------------------------------------------------------------
#include <atomic>

#include "irepa/data/loader.hpp"
#include "irepa/data/shards.hpp"
#include "irepa/io/safetensors.hpp"

TEST_CASE("prefetching gives the batches in index order, from any start, and passes errors on", "[data][loader]") {
  std::atomic<int> produced{0};
  auto make = [&](std::int64_t i) {
    ++produced;
    if (i == 7) throw Error("batch 7 is broken");
    return std::vector<std::int64_t>{i, i * i};
  };
  {
    data::PrefetchLoader<std::vector<std::int64_t>> loader(make, 3, 2);
    for (std::int64_t i = 3; i < 7; ++i) CHECK(loader.next() == std::vector<std::int64_t>{i, i * i});
    REQUIRE_IREPA_ERROR(loader.next(), "batch 7 is broken");
    CHECK(loader.next() == std::vector<std::int64_t>{8, 64});  // goes on after an error
  }  // the destructor stops the worker
  CHECK(produced >= 6);
}

TEST_CASE("sharded safetensors datasets: gather across shards, and malformed shards are errors", "[data][shards]") {
  const auto dir = fs::temp_directory_path() / ("irepa_shards_" + std::to_string(test::rng().seed()));
  fs::create_directories(dir);
  // Two shards of 3 and 4 samples: latents [n, 4, 2, 2], labels, features.dino [n, 4, 6].
  std::vector<Tensor<float>> lat, dino;
  std::vector<Tensor<std::int64_t>> lab;
  for (std::int64_t s = 0, n = 3; s < 2; ++s, ++n) {
    lat.push_back(test::randn<float>({n, 4, 2, 2}));
    dino.push_back(test::randn<float>({n, 4, 6}));
    lab.emplace_back(Shape{n});
    test::rng().randint(lab.back().view(), 0, 1000);
    io::SafeTensorsWriter w;
    w.add("latents", lat.back());
    w.add("labels", lab.back());
    w.add("features.dino", dino.back());
    w.write((dir / ("shard_" + std::to_string(s) + ".safetensors")).string());
  }
  data::ShardedDataset ds(dir.string());
  CHECK(ds.size() == 7);
  CHECK(ds.kind() == "latents");
  CHECK(ds.sample_shape() == Shape{4, 2, 2});
  CHECK(ds.encoders() == std::vector<std::string>{"dino"});
  const auto b = ds.get<double>({5, 0, 3, 2});  // shard 1 row 2, shard 0 row 0, shard 1 row 0, shard 0 row 2
  const std::pair<int, int> where[] = {{1, 2}, {0, 0}, {1, 0}, {0, 2}};
  for (int i = 0; i < 4; ++i) {
    const auto [s, r] = where[i];
    CHECK(b.y[i] == lab[static_cast<std::size_t>(s)][r]);
    for (int k = 0; k < 16; ++k) CHECK(b.x[i * 16 + k] == static_cast<double>(lat[static_cast<std::size_t>(s)][r * 16 + k]));
    for (int k = 0; k < 24; ++k)
      CHECK(b.features.at("dino")[i * 24 + k] == static_cast<double>(dino[static_cast<std::size_t>(s)][r * 24 + k]));
  }
  REQUIRE_IREPA_ERROR(ds.get<float>({7}), "sample 7 is outside the 7 samples");

  SECTION("a shard whose features differ") {
    io::SafeTensorsWriter w;
    w.add("latents", test::randn<float>({2, 4, 2, 2}));
    Tensor<std::int64_t> l(Shape{2});
    l.fill(1);
    w.add("labels", l);
    w.write((dir / "shard_2.safetensors").string());
    REQUIRE_IREPA_ERROR(data::ShardedDataset(dir.string()), "shard_2.safetensors", "other target features");
  }
  SECTION("a shard with labels of the wrong length, or an unknown tensor") {
    io::SafeTensorsWriter w;
    w.add("latents", test::randn<float>({2, 4, 2, 2}));
    Tensor<std::int64_t> l(Shape{3});
    l.fill(1);
    w.add("labels", l);
    w.add("features.dino", test::randn<float>({2, 4, 6}));
    w.write((dir / "shard_2.safetensors").string());
    REQUIRE_IREPA_ERROR(data::ShardedDataset(dir.string()), "shard_2.safetensors", "labels", "expected integer [2]");
    io::SafeTensorsWriter w2;
    w2.add("images", test::randn<float>({2, 4, 2, 2}));
    w2.add("latents", test::randn<float>({2, 4, 2, 2}));
    w2.write((dir / "shard_2.safetensors").string());
    REQUIRE_IREPA_ERROR(data::ShardedDataset(dir.string()), "holds both 'latents' and 'images'", "beside 'posteriors'");
  }
  fs::remove_all(dir);
}
