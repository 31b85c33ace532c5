// The ADM evaluator's pieces: zip / npz reading and writing (stored, deflated, ZIP64; bad files
// refused), the ops Inception-v3 adds (rectangular and strided convs, window pools, channel
// concatenation, TF1 resizing), the network in float against double, the statistics (Frechet
// distance by both square roots, the eps retry on singular covariances, Inception Score,
// precision / recall), and the golden files.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "golden/adm.hpp"
#include "irepa/io/npz.hpp"
#include "irepa/metrics/adm_evaluator.hpp"
#include "irepa/models/inception_v3.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("irepa_adm_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}

std::vector<char> bytes_of(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_bytes(const fs::path& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

Tensor<std::uint8_t> random_uint8_images(std::int64_t n, std::int64_t h, std::int64_t w) {
  Tensor<std::int64_t> v(Shape{n, h, w, 3});
  test::rng().randint(v.view(), 0, 256);
  Tensor<std::uint8_t> u(v.shape());
  for (std::int64_t i = 0; i < v.numel(); ++i) u[i] = static_cast<std::uint8_t>(v[i]);
  return u;
}

/// An npz of random images (streamed in two pieces), a float32 vector and a float64 matrix.
void write_sample_npz(const fs::path& p, bool compressed, bool zip64, const Tensor<std::uint8_t>& images, const Tensor<float>& mu,
                      const Tensor<double>& sigma) {
  io::NpzWriter w(p.string(), compressed, zip64);
  w.begin_array("arr_0", DType::U8, images.shape());
  const auto half = static_cast<std::uint64_t>(images.numel() / 2);
  w.write_bytes(images.data(), half);
  w.write_bytes(images.data() + half, static_cast<std::uint64_t>(images.numel()) - half);
  w.end_array();
  w.add<float>("mu", mu.cview());
  w.add<double>("sigma", sigma.cview());
  w.finish();
}

}  // namespace

TEST_CASE("npz: arrays written stored, deflated and with ZIP64 records read back bit for bit", "[npz]") {
  const auto images = random_uint8_images(5, 7, 9);
  const auto mu = test::randn<float>(Shape{6});
  const auto sigma = test::randn<double>(Shape{6, 6});
  for (const bool compressed : {false, true})
    for (const bool zip64 : {false, true}) {
      INFO("compressed " << compressed << ", zip64 " << zip64);
      const fs::path p = scratch("rt.npz");
      write_sample_npz(p, compressed, zip64, images, mu, sigma);
      CHECK_FALSE(fs::exists(p.string() + ".tmp"));
      const io::NpzFile f(p.string());
      CHECK(f.names() == std::vector<std::string>{"arr_0", "mu", "sigma"});
      const auto a = f.array("arr_0");
      CHECK(a.descr == "|u1");
      REQUIRE(a.shape == images.shape());
      CHECK(std::equal(images.data(), images.data() + images.numel(), reinterpret_cast<const std::uint8_t*>(a.data.data())));
      // Rows read through load_rows (the evaluator's batches) widen uint8 to float exactly.
      const auto rows = a.load_rows<float>(2, 2);
      for (std::int64_t i = 0; i < rows.numel(); ++i) CHECK(rows[i] == static_cast<float>(images[2 * 7 * 9 * 3 + i]));
      const auto m = f.array("mu");
      CHECK(m.descr == "<f4");
      CHECK(std::memcmp(m.data.data(), mu.data(), 6 * sizeof(float)) == 0);
      const auto s = f.array("sigma").load<double>();
      CHECK(std::memcmp(s.data(), sigma.data(), 36 * sizeof(double)) == 0);
      REQUIRE_IREPA_ERROR(f.array("mu_s"), "no array 'mu_s'", "arr_0, mu, sigma");
      REQUIRE_IREPA_ERROR(f.array("mu").load<std::int64_t>(), "holds F32", "cannot be read as I64");
      // An array outlives the reader it came from (it holds the mapping or its inflated bytes).
      const io::NpyArray kept = io::NpzFile(p.string()).array("arr_0");
      const auto again = kept.load<std::uint8_t>();
      CHECK(std::equal(images.data(), images.data() + images.numel(), again.data()));
      fs::remove(p);
    }
}

TEST_CASE("npz: numpy's np.savez and np.savez_compressed files read back to their formulas", "[npz]") {
  for (const char* name : {"numpy_stored.npz", "numpy_deflated.npz"}) {
    INFO(name);
    const io::NpzFile f((fs::path(IREPA_TEST_DATA_DIR) / "npz" / name).string());
    const auto a = f.array("arr_0");
    REQUIRE(a.shape == Shape({3, 5, 4, 3}));
    for (std::int64_t i = 0; i < a.shape.numel(); ++i) CHECK(std::to_integer<int>(a.data[static_cast<std::size_t>(i)]) == (7 * i + 3) % 256);
    const auto mu = f.array("mu");
    CHECK(mu.descr == "<f4");
    const auto m = mu.load<float>();
    for (std::int64_t i = 0; i < 6; ++i) CHECK(m[i] == 0.25f * static_cast<float>(i) - 1.0f);
    const auto s = f.array("sigma").load<double>();
    for (std::int64_t r = 0; r < 6; ++r)
      for (std::int64_t c = 0; c < 6; ++c) CHECK(s[r * 6 + c] == 1.0 / (1.0 + static_cast<double>(std::abs(r - c))));
  }
}

TEST_CASE("npz: equal contents give equal files, and a deflated archive is smaller on redundant data", "[npz]") {
  Tensor<std::uint8_t> flat(Shape{4, 32, 32, 3});
  for (std::int64_t i = 0; i < flat.numel(); ++i) flat[i] = static_cast<std::uint8_t>((i / 97) % 5);
  const auto mu = test::randn<float>(Shape{3});
  const auto sigma = test::randn<double>(Shape{3, 3});
  const fs::path a = scratch("a.npz"), b = scratch("b.npz"), c = scratch("c.npz");
  write_sample_npz(a, false, false, flat, mu, sigma);
  write_sample_npz(b, false, false, flat, mu, sigma);
  write_sample_npz(c, true, false, flat, mu, sigma);
  CHECK(bytes_of(a) == bytes_of(b));
  CHECK(fs::file_size(c) * 4 < fs::file_size(a));
}

TEST_CASE("npz: truncated, corrupted and foreign files are clear errors", "[npz]") {
  const auto images = random_uint8_images(3, 8, 8);
  const auto mu = test::randn<float>(Shape{4});
  const auto sigma = test::randn<double>(Shape{4, 4});
  for (const bool compressed : {false, true}) {
    INFO("compressed " << compressed);
    const fs::path p = scratch("good.npz"), bad = scratch("bad.npz");
    write_sample_npz(p, compressed, false, images, mu, sigma);
    const auto good = bytes_of(p);
    // Every cut of the file: an Error at open or at reading an array, never a crash or wrong data.
    Tensor<std::int64_t> cuts(Shape{24});
    test::rng().randint(cuts.view(), 1, static_cast<std::int64_t>(good.size()));
    for (std::int64_t k = 0; k < cuts.numel(); ++k) {
      write_bytes(bad, std::vector<char>(good.begin(), good.begin() + cuts[k]));
      bool threw = false;
      try {
        const io::NpzFile f(bad.string());
        for (const auto& n : {"arr_0", "mu", "sigma"}) (void)f.array(n);
      } catch (const Error& e) {
        threw = true;
        INFO(e.what());
      }
      CHECK(threw);
    }
    // A flipped byte inside arr_0's data: its CRC-32 (stored) or the inflate / CRC (deflated).
    auto flipped = good;
    const auto at = static_cast<std::size_t>(compressed ? 120 : 30 + 9 + 20 + 128 + 50);
    flipped[at] = static_cast<char>(flipped[at] ^ 0x5a);
    write_bytes(bad, flipped);
    bool threw = false;
    try {
      const io::NpzFile f(bad.string());
      (void)f.array("arr_0");
    } catch (const Error& e) {
      threw = true;
      const std::string m = e.what();
      CHECK((m.find("CRC-32") != std::string::npos || m.find("inflate") != std::string::npos));
    }
    CHECK(threw);
  }
  const fs::path text = scratch("not.npz");
  write_bytes(text, std::vector<char>(100, 'x'));
  REQUIRE_IREPA_ERROR(io::NpzFile(text.string()), "no end-of-central-directory record");
  write_bytes(text, {});
  REQUIRE_IREPA_ERROR(io::NpzFile(text.string()), "too short for a zip archive");
}

TEST_CASE("npz: a writer that is not finished leaves nothing under the final name", "[npz]") {
  const fs::path p = scratch("unfinished.npz");
  {
    io::NpzWriter w(p.string());
    w.begin_array("arr_0", DType::U8, Shape{2, 2});
    w.write_bytes("ab", 2);
    REQUIRE_IREPA_ERROR(w.end_array(), "got 2 of its 4 bytes");
  }
  CHECK_FALSE(fs::exists(p));
  CHECK_FALSE(fs::exists(p.string() + ".tmp"));
}

TEST_CASE("conv2d_forward with rectangular kernels, strides and padding matches direct loops", "[adm][ops]") {
  const CpuContext ctx(2);
  struct Case {
    std::int64_t kh, kw, stride, ph, pw;
  };
  for (const Case c : {Case{1, 7, 1, 0, 3}, Case{7, 1, 1, 3, 0}, Case{3, 3, 2, 0, 0}, Case{1, 3, 1, 0, 1}, Case{5, 5, 1, 2, 2}}) {
    const std::int64_t B = 2, H = 9, W = 11, Ci = 5, Co = 4;
    const auto x = test::randn<double>(Shape{B, H, W, Ci});
    const auto w = test::randn<double>(Shape{Co, Ci, c.kh, c.kw});
    const auto b = test::randn<double>(Shape{Co});
    const ops::Conv2dSpec s{c.stride, c.ph, c.ph, c.pw, c.pw};
    const std::int64_t Ho = s.out_h(H, c.kh), Wo = s.out_w(W, c.kw);
    Tensor<double> y(Shape{B, Ho, Wo, Co}), ref(Shape{B, Ho, Wo, Co});
    ops::conv2d_forward<double>(ctx, x.cview(), w.cview(), b.cview(), s, y.view());
    for (std::int64_t n = 0; n < B; ++n)
      for (std::int64_t i = 0; i < Ho; ++i)
        for (std::int64_t j = 0; j < Wo; ++j)
          for (std::int64_t o = 0; o < Co; ++o) {
            double acc = b[o];
            for (std::int64_t a = 0; a < c.kh; ++a)
              for (std::int64_t e = 0; e < c.kw; ++e) {
                const std::int64_t h = i * c.stride - c.ph + a, v = j * c.stride - c.pw + e;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                for (std::int64_t k = 0; k < Ci; ++k) acc += w[((o * Ci + k) * c.kh + a) * c.kw + e] * x[((n * H + h) * W + v) * Ci + k];
              }
            ref[((n * Ho + i) * Wo + j) * Co + o] = acc;
          }
    INFO("kernel " << c.kh << "x" << c.kw << " stride " << c.stride);
    CHECK(test::rel_error(y, ref) < 1e-13);
  }
}

TEST_CASE("pool2d_forward: max and in-image average windows match direct loops, and channels concatenate and slice", "[adm][ops]") {
  const CpuContext ctx(2);
  const std::int64_t B = 2, H = 7, W = 8, C = 3;
  const auto x = test::randn<double>(Shape{B, H, W, C});
  for (const auto mode : {ops::PoolMode::Max, ops::PoolMode::AvgInImage})
    for (const ops::Pool2dSpec s : {ops::Pool2dSpec{3, 1, 1, mode}, ops::Pool2dSpec{3, 2, 0, mode}, ops::Pool2dSpec{7, 1, 0, mode}}) {
      Tensor<double> y(Shape{B, s.out(H), s.out(W), C});
      ops::pool2d_forward<double>(ctx, x.cview(), s, y.view());
      for (std::int64_t n = 0; n < B; ++n)
        for (std::int64_t i = 0; i < y.size(1); ++i)
          for (std::int64_t j = 0; j < y.size(2); ++j)
            for (std::int64_t c = 0; c < C; ++c) {
              double m = -INFINITY, sum = 0;
              int cnt = 0;
              for (std::int64_t a = 0; a < s.kernel; ++a)
                for (std::int64_t e = 0; e < s.kernel; ++e) {
                  const std::int64_t h = i * s.stride - s.pad + a, v = j * s.stride - s.pad + e;
                  if (h < 0 || h >= H || v < 0 || v >= W) continue;
                  const double val = x[((n * H + h) * W + v) * C + c];
                  m = std::max(m, val), sum += val, ++cnt;
                }
              const double want = mode == ops::PoolMode::Max ? m : sum / cnt;
              CHECK(std::abs(y[((n * y.size(1) + i) * y.size(2) + j) * C + c] - want) < 1e-14);
            }
    }
  const auto a = test::randn<double>(Shape{B, H, W, 2}), b = test::randn<double>(Shape{B, H, W, 5});
  Tensor<double> cat(Shape{B, H, W, 7}), back(Shape{B, H, W, 5});
  ops::copy_channels<double>(ctx, a.cview(), 0, cat.view());
  ops::copy_channels<double>(ctx, b.cview(), 2, cat.view());
  ops::slice_channels<double>(ctx, cat.cview(), 2, back.view());
  CHECK(test::rel_error(back, b) == 0.0);
  CHECK(cat[1] == a[1]);
  CHECK(cat[7 + 3] == b[5 + 1]);
  REQUIRE_IREPA_ERROR(ops::copy_channels<double>(ctx, b.cview(), 3, cat.view()), "copy_channels", "inside the whole's");
  REQUIRE_IREPA_ERROR(ops::pool2d_forward<double>(ctx, x.cview(), {3, 1, 3, ops::PoolMode::Max}, cat.view()), "0 <= padding < kernel");
}

TEST_CASE("TF1 bilinear resizing: float32-rounded scale, no half-pixel offset, border clamp", "[adm][ops]") {
  const CpuContext ctx(1);
  const std::int64_t H = 5, W = 7, oh = 13, ow = 9;
  const auto x = test::randn<double>(Shape{1, 2, H, W});
  const auto y = ops::interpolate<double>(ctx, x.cview(), oh, ow, ops::ResizeMode::BilinearTf1);
  const double sh = static_cast<double>(static_cast<float>(H) / static_cast<float>(oh));
  const double sw = static_cast<double>(static_cast<float>(W) / static_cast<float>(ow));
  for (std::int64_t c = 0; c < 2; ++c)
    for (std::int64_t i = 0; i < oh; ++i)
      for (std::int64_t j = 0; j < ow; ++j) {
        const double ys = i * sh, xs = j * sw;
        const auto y0 = static_cast<std::int64_t>(std::floor(ys)), x0 = static_cast<std::int64_t>(std::floor(xs));
        const std::int64_t y1 = std::min(y0 + 1, H - 1), x1 = std::min(x0 + 1, W - 1);
        const auto at = [&](std::int64_t r, std::int64_t q) { return x[(c * H + r) * W + q]; };
        const double top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * (xs - x0), bot = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * (xs - x0);
        CHECK(std::abs(y[(c * oh + i) * ow + j] - (top + (bot - top) * (ys - y0))) < 1e-13);
      }
  REQUIRE_IREPA_ERROR(ops::interpolate<double>(ctx, x.cview(), 4, 4, ops::ResizeMode::BilinearTf1, true), "no antialiased form");
}

TEST_CASE("Inception-v3: float and double agree on random weights, and features have the evaluator's shapes", "[adm][inception]") {
  const CpuContext ctx(2);
  InceptionV3<double> net;
  net.init_random(test::rng().seed());
  const auto netf = [&] {
    InceptionV3<float> f;  // the same weights through a file, rounded to float
    io::SafeTensorsWriter w;
    io::add_params(w, net.params());
    const fs::path p = scratch("inception.safetensors");
    w.write(p.string());
    f.load(io::SafeTensorsFile(p.string()));
    return f;
  }();
  const auto u8 = random_uint8_images(2, 40, 33);
  Tensor<double> x(u8.shape());
  Tensor<float> xf(u8.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = u8[i], xf[i] = u8[i];
  const auto d = net.forward(ctx, x.cview());
  const auto f = netf.forward(ctx, xf.cview());
  CHECK(d.pool3.shape() == Shape({2, 2048}));
  CHECK(d.spatial.shape() == Shape({2, 2023}));
  CHECK(d.logits.shape() == Shape({2, 1008}));
  CHECK(test::rel_error(f.pool3, d.pool3) < 1e-4);
  CHECK(test::rel_error(f.spatial, d.spatial) < 1e-4);
  CHECK(test::rel_error(f.logits, d.logits) < 1e-4);
  // ReLU features: non-negative and not all zero.
  CHECK(*std::min_element(d.pool3.data(), d.pool3.data() + d.pool3.numel()) >= 0.0);
  CHECK(*std::max_element(d.pool3.data(), d.pool3.data() + d.pool3.numel()) > 0.0);
  REQUIRE_IREPA_ERROR(net.forward(ctx, test::randn<double>(Shape{1, 8, 8, 4}).cview()), "expected [B, H, W, 3]");
}

TEST_CASE("Inception-v3 load: missing, mis-shaped and unexpected tensors are named", "[adm][inception]") {
  InceptionV3<float> net;
  io::SafeTensorsWriter w;
  io::add_params(w, net.params());
  w.add<float>("Mixed_5b.branch1x1.bn.num_batches_tracked", Tensor<float>(Shape{}).cview());  // ignored
  w.add<float>("extra.weight", test::randn<float>(Shape{3}).cview());
  const fs::path p = scratch("extra.safetensors");
  w.write(p.string());
  REQUIRE_IREPA_ERROR(net.load(io::SafeTensorsFile(p.string())), "unexpected 'extra.weight'");
  io::SafeTensorsWriter w2;
  net.params().for_each([&](std::string_view name, TensorView<float> v, TensorView<float>) {
    if (name == "fc.bias") return;
    if (name == "Conv2d_1a_3x3.conv.weight") {
      w2.add<float>(std::string(name), test::randn<float>(Shape{32, 3, 3, 1}).cview());
      return;
    }
    w2.add<float>(std::string(name), v);
  });
  w2.write(p.string());
  REQUIRE_IREPA_ERROR(net.load(io::SafeTensorsFile(p.string())), "missing 'fc.bias'", "'Conv2d_1a_3x3.conv.weight' has shape [32, 3, 3, 1]");
}

TEST_CASE("Frechet distance: the sqrtm route and the symmetric one agree, and singular covariances take the eps retry", "[adm][stats]") {
  const auto a = test::randn<double>(Shape{60, 12}), b0 = test::randn<double>(Shape{50, 12});
  Tensor<double> b(b0.shape());
  for (std::int64_t i = 0; i < b.numel(); ++i) b[i] = 0.7 * b0[i] + 0.3 * a[i % a.numel()] + 0.2;
  const auto ga = metrics::feature_statistics<double>(a.cview()), gb = metrics::feature_statistics<double>(b.cview());
  const double s1 = metrics::frechet_distance(gb, ga, metrics::SqrtMethod::Sqrtm);
  const double s2 = metrics::frechet_distance(gb, ga, metrics::SqrtMethod::Symmetric);
  CHECK(s1 > 0.1);
  CHECK(std::abs(s1 - s2) < 1e-10 * s1);
  CHECK(std::abs(metrics::frechet_distance(ga, ga, metrics::SqrtMethod::Sqrtm)) < 1e-9);
  // Fewer rows than dimensions: rank-deficient covariances, as 50k samples in a 2023-d space of
  // zero-padded features can be. sqrtm of the product is not finite; the retry adds eps I.
  const auto c = test::randn<double>(Shape{5, 12}), d = test::randn<double>(Shape{6, 12});
  const auto gc = metrics::feature_statistics<double>(c.cview()), gd = metrics::feature_statistics<double>(d.cview());
  Eigen::MatrixXd zero = Eigen::MatrixXd::Zero(12, 12);
  zero.topLeftCorner(3, 3) = Eigen::MatrixXd::Identity(3, 3);
  CHECK(std::isnan(metrics::trace_sqrtm_product(zero, zero)));
  const double r1 = metrics::frechet_distance(gd, gc, metrics::SqrtMethod::Sqrtm);
  const double r2 = metrics::frechet_distance(gd, gc, metrics::SqrtMethod::Symmetric);
  CHECK(std::isfinite(r1));
  CHECK(std::abs(r1 - r2) < 1e-4 * r2);
  metrics::Gaussian bad = gc;
  bad.cov(0, 0) = NAN;
  REQUIRE_IREPA_ERROR(metrics::frechet_distance(bad, gd, metrics::SqrtMethod::Sqrtm), "NaN or Inf");
  metrics::Gaussian small;
  small.mean = Eigen::VectorXd::Zero(3), small.cov = Eigen::MatrixXd::Identity(3, 3);
  REQUIRE_IREPA_ERROR(metrics::frechet_distance(small, gd, metrics::SqrtMethod::Symmetric), "dimension 3", "against 12");
  Tensor<double> nan_rows = test::randn<double>(Shape{4, 3});
  nan_rows[5] = NAN;
  REQUIRE_IREPA_ERROR(metrics::feature_statistics<double>(nan_rows.cview()), "feature 2 of row 1");
}

TEST_CASE("Inception Score: 1 for identical predictions, the class count for confident distinct ones, in chunks of split_size rows", "[adm][stats]") {
  const std::int64_t K = 7;
  Tensor<double> same(Shape{20, K});
  const auto row = test::randn<double>(Shape{K});
  for (std::int64_t i = 0; i < same.numel(); ++i) same[i] = row[i % K];
  CHECK(std::abs(metrics::inception_score<double>(same.cview(), 5000).score - 1.0) < 1e-12);
  Tensor<double> sharp(Shape{K * 6, K});
  sharp.fill(0.0);
  for (std::int64_t i = 0; i < sharp.size(0); ++i) sharp[i * K + i % K] = 60.0;
  CHECK(std::abs(metrics::inception_score<double>(sharp.cview(), 5000).score - static_cast<double>(K)) < 1e-9);
  const auto is = metrics::inception_score<double>(test::randn<double>(Shape{23, K}, 3.0).cview(), 10);
  CHECK(is.splits.size() == 3);  // 10 + 10 + 3 rows
  double mean = 0;
  for (double s : is.splits) mean += s / 3;
  CHECK(std::abs(is.score - mean) < 1e-12);
}

TEST_CASE("precision and recall: identical sets are 1 and 1, a far set 0 and 0, radii are 3rd-neighbour squared distances", "[adm][stats]") {
  const auto a = test::randn<double>(Shape{40, 6});
  const auto pr = metrics::precision_recall<double>(a.cview(), a.cview(), 3, 7);
  CHECK(pr.precision == 1.0);
  CHECK(pr.recall == 1.0);
  Tensor<double> far(a.shape());
  for (std::int64_t i = 0; i < far.numel(); ++i) far[i] = a[i] + 100.0;
  const auto none = metrics::precision_recall<double>(a.cview(), far.cview(), 3, 16);
  CHECK(none.precision == 0.0);
  CHECK(none.recall == 0.0);
  // Radii against a direct computation, with a row batch that does not divide N.
  for (std::int64_t i = 0; i < 40; i += 13) {
    std::vector<double> d;
    for (std::int64_t j = 0; j < 40; ++j) {
      double s = 0;
      for (std::int64_t k = 0; k < 6; ++k) s += (a[i * 6 + k] - a[j * 6 + k]) * (a[i * 6 + k] - a[j * 6 + k]);
      d.push_back(s);
    }
    std::sort(d.begin(), d.end());
    CHECK(std::abs(pr.radii_ref[static_cast<std::size_t>(i)] - d[3]) < 1e-10 * d[3]);
  }
  REQUIRE_IREPA_ERROR(metrics::precision_recall<double>(a.cview(), test::randn<double>(Shape{10, 5}).cview()), "differ in dimension");
  REQUIRE_IREPA_ERROR(metrics::manifold_radii<double>(test::randn<double>(Shape{3, 5}).cview(), 3), "N >= 4");
}

TEST_CASE("the ADM golden files: Inception, statistics, npz fixtures (double and float)", "[adm][golden]") {
  if (!test::have_golden()) return;
  const auto dir = test::golden_dir();
  const auto ok = [](const std::vector<golden::Row>& rows) {
    for (const auto& r : rows) {
      INFO(r.name << ": " << r.rel << " (tol " << r.tol << ")");
      CHECK(r.ok());
    }
  };
  const io::SafeTensorsFile stats((dir / "fid_stats_small.safetensors").string());
  ok(golden::check_fid_statistics<double>(stats, 1e-9));
  ok(golden::check_fid_statistics<float>(stats, 1e-4));
  ok(golden::check_adm_npz(io::SafeTensorsFile((dir / "adm_ref_batch_small.safetensors").string())));
  const io::SafeTensorsFile inc((dir / "inception_fid_random.safetensors").string());
  ok(golden::check_inception_fid<float>(inc, 1e-4));
}
