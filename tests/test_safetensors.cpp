// safetensors: round trips of every dtype, metadata, atomic writes, and a clear error for each
// kind of corrupt file; the golden files are read with it.

#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <unistd.h>

#include "irepa/core/arena.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("irepa_st_" + std::to_string(::getpid()) + "_" + std::to_string(test::rng().position()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_file(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}
/// A file from a raw JSON header and data bytes.
std::string make_raw(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + data;
}
}  // namespace

TEST_CASE("safetensors round trip: every dtype, shapes, metadata", "[io][safetensors]") {
  TempDir dir;
  const auto path = (dir.path / "all.safetensors").string();
  auto d = test::randn<double>({3, 5});
  auto f = test::randn<float>({7});
  Tensor<std::int64_t> i64(Shape{2, 2});
  Tensor<std::int32_t> i32(Shape{3});
  Tensor<std::uint8_t> u8(Shape{4});
  Tensor<bool> bl(Shape{3});
  for (int i = 0; i < 4; ++i) i64[i] = (i - 2) * 1000000007LL;
  for (int i = 0; i < 3; ++i) i32[i] = -i * 77;
  for (int i = 0; i < 4; ++i) u8[i] = static_cast<std::uint8_t>(60 * i + 3);
  for (int i = 0; i < 3; ++i) bl[i] = (i % 2) == 0;
  Tensor<double> scalar(Shape{});
  scalar[0] = 42.5;

  io::SafeTensorsWriter w;
  w.add("params/d", d);
  w.add("f", f);
  w.add_as<double>("as_f16", d.cview(), DType::F16);
  w.add_as<double>("as_bf16", d.cview(), DType::BF16);
  w.add("i64", i64);
  w.add("i32", i32);
  w.add("u8", u8);
  w.add("bool", bl);
  w.add("scalar", scalar);
  w.set_metadata("model", "SiT");
  w.set_metadata("config", R"({"depth": 4})");
  w.write(path);

  io::SafeTensorsFile r(path);
  CHECK(r.metadata("model") == "SiT");
  CHECK(r.metadata("config") == R"({"depth": 4})");
  CHECK(!r.metadata("missing"));
  CHECK(r.names().size() == 9);
  CHECK(r.info("as_f16").dtype == DType::F16);
  CHECK(r.info("bool").dtype == DType::Bool);
  auto d2 = r.load<double>("params/d", Shape{3, 5});
  for (int i = 0; i < 15; ++i) CHECK(d2[i] == d[i]);
  auto f2 = r.load<float>("f");
  for (int i = 0; i < 7; ++i) CHECK(f2[i] == f[i]);
  auto h = r.load<double>("as_f16");
  auto b = r.load<double>("as_bf16");
  for (int i = 0; i < 15; ++i) {
    CHECK(h[i] == static_cast<double>(static_cast<float>(f16(static_cast<float>(d[i])))));
    CHECK(b[i] == static_cast<double>(static_cast<float>(bf16(static_cast<float>(d[i])))));
  }
  auto bf = r.load<bf16>("as_bf16");
  CHECK(static_cast<float>(bf[3]) == static_cast<float>(bf16(static_cast<float>(d[3]))));
  auto i2 = r.load<std::int64_t>("i64");
  for (int i = 0; i < 4; ++i) CHECK(i2[i] == i64[i]);
  auto i3 = r.load<std::int64_t>("i32");
  CHECK(i3[2] == -154);
  auto u = r.load<std::int64_t>("u8");
  CHECK(u[3] == 183);
  auto bb = r.load<std::uint8_t>("bool");
  CHECK((bb[0] == 1 && bb[1] == 0 && bb[2] == 1));
  CHECK(r.load<double>("scalar")[0] == 42.5);
  // Strided destination.
  Tensor<double> big(Shape{5, 3});
  r.load_into<double>("params/d", big.view().transpose(0, 1));
  CHECK(big(4, 2) == d(2, 4));
  // Header alignment: the data section starts at a multiple of 8.
  std::uint64_t n = 0;
  std::memcpy(&n, read_file(path).data(), 8);
  CHECK(n % 8 == 0);
  // No temporary file is left behind.
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator{}) == 1);
}

TEST_CASE("safetensors errors name the problem", "[io][safetensors]") {
  TempDir dir;
  const auto good = (dir.path / "good.safetensors").string();
  io::SafeTensorsWriter w;
  w.add("a", test::randn<float>({2, 3}));
  w.add("b", test::randn<double>({4}));
  w.write(good);
  const std::string bytes = read_file(good);
  io::SafeTensorsFile ok(good);

  SECTION("missing tensor") {
    REQUIRE_IREPA_ERROR(ok.load<float>("c"), "no tensor named 'c'", "good.safetensors");
  }
  SECTION("wrong expected shape") {
    REQUIRE_IREPA_ERROR(ok.load<float>("a", Shape{3, 2}), "'a'", "[2, 3]", "[3, 2]");
  }
  SECTION("float into integer") {
    REQUIRE_IREPA_ERROR(ok.load<std::int64_t>("a"), "F32", "integer");
  }
  SECTION("truncated data") {
    const auto p = (dir.path / "trunc.safetensors").string();
    write_file(p, bytes.substr(0, bytes.size() - 5));
    REQUIRE_IREPA_ERROR(io::SafeTensorsFile{p}, "outside", "truncated");
  }
  SECTION("truncated header") {
    const auto p = (dir.path / "trunc_header.safetensors").string();
    write_file(p, bytes.substr(0, 20));
    REQUIRE_IREPA_ERROR(io::SafeTensorsFile{p}, "truncated", "header claims");
  }
  SECTION("shorter than the length field") {
    const auto p = (dir.path / "tiny.safetensors").string();
    write_file(p, "abc");
    REQUIRE_IREPA_ERROR(io::SafeTensorsFile{p}, "truncated", "3 bytes");
  }
  SECTION("header lies about offsets") {
    const auto p = (dir.path / "lie_off.safetensors").string();
    write_file(p, make_raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           std::string(12, '\0')));
    REQUIRE_IREPA_ERROR(io::SafeTensorsFile{p}, "overlap", "'a'", "'b'");
  }
  SECTION("header lies about the shape") {
    const auto p = (dir.path / "lie_shape.safetensors").string();
    write_file(p, make_raw(R"({"a":{"dtype":"F32","shape":[3,3],"data_offsets":[0,24]}})", std::string(24, '\0')));
    REQUIRE_IREPA_ERROR(io::SafeTensorsFile{p}, "'a'", "[3, 3]", "36 bytes", "24 bytes");
  }
  SECTION("unknown dtype") {
    const auto p = (dir.path / "dtype.safetensors").string();
    write_file(p, make_raw(R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0')));
    REQUIRE_IREPA_ERROR(io::SafeTensorsFile{p}, "unknown dtype 'F8_E4M3'", "'a'");
  }
  SECTION("header is not JSON") {
    const auto p = (dir.path / "json.safetensors").string();
    write_file(p, make_raw("{\"a\": [1, 2", ""));
    REQUIRE_IREPA_ERROR(io::SafeTensorsFile{p}, "not valid JSON");
  }
  SECTION("missing file") {
    REQUIRE_IREPA_ERROR(io::SafeTensorsFile{(dir.path / "nope.safetensors").string()}, "cannot open", "nope.safetensors");
  }
  SECTION("failed writes throw, name the file, and leave the folder as it was") {
    io::SafeTensorsWriter w2;
    w2.add("z", test::randn<float>({3}));
    REQUIRE_IREPA_ERROR(w2.write((dir.path / "no_such_dir" / "x.safetensors").string()), "cannot create", "no_such_dir");
    // The target is a folder: the temporary is written, the rename fails, the temporary is removed.
    fs::create_directory(dir.path / "a_folder");
    REQUIRE_IREPA_ERROR(w2.write((dir.path / "a_folder").string()), "cannot rename", "a_folder");
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(dir.path)) left.push_back(e.path().filename().string());
    std::sort(left.begin(), left.end());
    CHECK(left == std::vector<std::string>{"a_folder", "good.safetensors"});
    CHECK(read_file(good) == bytes);
    io::SafeTensorsWriter bad;
    REQUIRE_IREPA_ERROR(bad.add_as<std::int64_t>("u", Tensor<std::int64_t>(Shape{1}, 300).cview(), DType::U8), "does not fit U8");
  }
}

TEST_CASE("the golden files read with their metadata and tensors", "[io][safetensors][golden]") {
  if (!test::have_golden()) return;
  int files = 0;
  for (const auto& e : fs::directory_iterator(test::golden_dir())) {
    if (e.path().extension() != ".safetensors") continue;
    io::SafeTensorsFile f(e.path().string());
    INFO(e.path());
    CHECK(f.metadata("format") == "irepa-golden-v1");
    CHECK(f.metadata("model").has_value());
    CHECK(f.metadata("config").has_value());
    CHECK(!f.names().empty());
    ++files;
  }
  CHECK(files >= 13);
  io::SafeTensorsFile sit((test::golden_dir() / "sit_irepa_conv3_zscore.safetensors").string());
  auto w = sit.load<double>("params/blocks.0.attn.qkv.weight", Shape{144, 48});
  auto y = sit.load<std::int64_t>("inputs/y", Shape{3});
  CHECK(y[2] == 10);  // the null class for the last image
  double s = 0;
  for (std::int64_t i = 0; i < w.numel(); ++i) s += w[i] * w[i];
  CHECK(s > 0);
  io::SafeTensorsFile sm((test::golden_dir() / "spatial_metrics_16x16.safetensors").string());
  CHECK(sm.info("inputs/features").dtype == DType::F32);
  CHECK(sm.info("inputs/masks").dtype == DType::U8);
}

namespace {
template <class S>
struct TwoLayersT {
  using scalar_type = S;
  using device_type = Cpu;
  Param<S> w1{Shape{4, 3}}, b1{Shape{4}}, w2{Shape{2, 4}};
  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "fc1.weight"), w1);
    v(join_name(prefix, "fc1.bias"), b1);
    v(join_name(prefix, "fc2.weight"), w2);
  }
};
using TwoLayers = TwoLayersT<float>;
}  // namespace

TEST_CASE("parameter arenas save and load by name, and mismatches are named", "[io][params]") {
  TempDir dir;
  const auto path = (dir.path / "model.safetensors").string();
  TwoLayers a;
  ParamArena<float> pa(a);
  test::rng().normal(pa.values());
  io::SafeTensorsWriter w;
  io::add_params(w, pa, "model.");
  w.add("model_extra_not_under_prefix", test::randn<float>({2}));
  w.write(path);

  TwoLayers b;
  ParamArena<float> pb(b);
  io::SafeTensorsFile f(path);
  io::load_params(f, pb, "model.");
  for (std::int64_t i = 0; i < pa.numel(); ++i) REQUIRE(pb.values()[i] == pa.values()[i]);
  CHECK(b.w2.value(1, 3) == a.w2.value(1, 3));

  SECTION("double model from a float file converts") {
    TwoLayersT<double> d;
    ParamArena<double> pd(d);
    io::load_params(f, pd, "model.");
    CHECK(d.b1.value[2] == static_cast<double>(a.b1.value[2]));
  }
  SECTION("missing, unexpected and mis-shaped tensors are all named; nothing is overwritten") {
    const auto bad = (dir.path / "bad.safetensors").string();
    io::SafeTensorsWriter wb;
    wb.add("model.fc1.weight", test::randn<float>({3, 4}));  // transposed
    wb.add("model.fc1.bias", test::randn<float>({4}));
    wb.add("model.fc3.weight", test::randn<float>({2, 4}));  // unexpected
    wb.write(bad);                                            // fc2.weight missing
    TwoLayers c;
    ParamArena<float> pc(c);
    pc.values().fill(7.0f);
    REQUIRE_IREPA_ERROR(io::load_params(io::SafeTensorsFile(bad), pc, "model."), "'model.fc1.weight' has shape [3, 4], expected [4, 3]",
                        "missing 'model.fc2.weight' [2, 4]", "unexpected 'model.fc3.weight'", "bad.safetensors");
    for (std::int64_t i = 0; i < pc.numel(); ++i) REQUIRE(pc.values()[i] == 7.0f);
    // Tolerating extra tensors still refuses the missing and mis-shaped ones.
    REQUIRE_IREPA_ERROR(io::load_params(io::SafeTensorsFile(bad), pc, "model.", {.allow_unexpected = true, .read_by_caller = {}}), "missing");
  }
}
