// PNG masks for the spatial metrics: libpng reading and writing, Pillow-exact resizing (bicubic
// for grey masks, nearest for 1-bit and palette ones) against Pillow's own output, the grid
// max-pool and the reference's foreground / background filter, and the errors of bad files.

#include <filesystem>
#include <fstream>

#include "irepa/io/png.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/metrics/masks.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {
const fs::path kMasks = fs::path(IREPA_TEST_DATA_DIR) / "masks";

fs::path temp_dir(const std::string& stem) {
  const auto d = fs::temp_directory_path() / (stem + "_" + std::to_string(test::rng().seed()));
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST_CASE("PNG masks resize exactly as Pillow does and pool to the grid as the reference", "[metrics][masks]") {
  io::SafeTensorsFile expected((kMasks / "expected.safetensors").string());
  for (int i = 0; i < 5; ++i) {
    const std::string png = (kMasks / fmt::format("mask_{:02d}.png", i)).string();
    INFO(png);
    const io::PngImage im = io::read_png(png);
    const auto filter = im.mode == "L" ? metrics::ResizeFilter::Bicubic : metrics::ResizeFilter::Nearest;
    const auto resized = metrics::pil_resize(im.pixels, 256, 256, filter);
    const auto want = expected.load<std::uint8_t>(fmt::format("resized.{}", i));
    REQUIRE(resized.shape() == want.shape());
    std::int64_t differ = 0, nonzero = 0;
    for (std::int64_t k = 0; k < want.numel(); ++k) {
      differ += resized[k] != want[k];
      nonzero += want[k] != 0;
    }
    CHECK(differ == 0);
    CHECK(nonzero > 0);
    const auto grid = metrics::mask_to_grid(resized, 16);
    const auto want_grid = expected.load<std::uint8_t>(fmt::format("grid.{}", i));
    for (std::int64_t k = 0; k < 256; ++k) CHECK(grid[k] == want_grid[k]);
  }
  const auto gm = metrics::load_png_masks(kMasks.string());
  const auto kept = expected.load<std::int64_t>("kept");
  REQUIRE(gm.files.size() == 5);
  REQUIRE(static_cast<std::int64_t>(gm.kept.size()) == kept.numel());
  for (std::int64_t k = 0; k < kept.numel(); ++k) {
    CHECK(gm.kept[static_cast<std::size_t>(k)] == kept[k]);
    const auto want_grid = expected.load<std::uint8_t>(fmt::format("grid.{}", kept[k]));
    for (std::int64_t t = 0; t < 256; ++t) CHECK(gm.masks(k, t) == want_grid[t]);
  }
}

TEST_CASE("pil_resize: identity, and a constant image stays constant both ways", "[metrics][masks]") {
  Tensor<std::uint8_t> img(Shape{37, 53});
  Tensor<std::int64_t> v(Shape{img.numel()});
  test::rng().randint(v.view(), 0, 256);
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(v[i]);
  const auto same = metrics::pil_resize(img, 37, 53, metrics::ResizeFilter::Bicubic);
  for (std::int64_t i = 0; i < img.numel(); ++i) CHECK(same[i] == img[i]);
  img.fill(173);
  for (auto [h, w] : {std::pair{256, 256}, std::pair{16, 9}}) {
    const auto r = metrics::pil_resize(img, h, w, metrics::ResizeFilter::Bicubic);
    for (std::int64_t i = 0; i < r.numel(); ++i) CHECK(r[i] == 173);
  }
}

TEST_CASE("PNG write and read round trip (grey and RGB), and bad files are errors", "[io][png]") {
  const auto dir = temp_dir("irepa_png");
  for (std::int64_t c : {1, 3}) {
    Tensor<std::uint8_t> img = c == 1 ? Tensor<std::uint8_t>(Shape{19, 23}) : Tensor<std::uint8_t>(Shape{19, 23, 3});
    Tensor<std::int64_t> v(Shape{img.numel()});
    test::rng().randint(v.view(), 0, 256);
    for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(v[i]);
    const std::string path = (dir / fmt::format("img{}.png", c)).string();
    io::write_png(path, img);
    const auto back = io::read_png(path);
    CHECK(back.mode == (c == 1 ? "L" : "RGB"));
    REQUIRE(back.pixels.shape() == img.shape());
    for (std::int64_t i = 0; i < img.numel(); ++i) CHECK(back.pixels[i] == img[i]);
  }
  SECTION("an RGB mask") {
    fs::create_directories(dir / "rgb");
    fs::copy_file(dir / "img3.png", dir / "rgb" / "m.png");
    REQUIRE_IREPA_ERROR(metrics::load_png_masks((dir / "rgb").string()), "RGB image", "single-channel");
  }
  SECTION("a truncated PNG") {
    const std::string path = (dir / "img1.png").string();
    const auto size = fs::file_size(path);
    fs::resize_file(path, size / 2);
    REQUIRE_IREPA_ERROR(io::read_png(path), "img1.png", "corrupt or truncated");
  }
  SECTION("not a PNG, and a folder without masks") {
    const std::string path = (dir / "text.png").string();
    std::ofstream(path) << "hello, not a png";
    REQUIRE_IREPA_ERROR(io::read_png(path), "text.png", "not a PNG file");
    fs::create_directories(dir / "empty");
    REQUIRE_IREPA_ERROR(metrics::load_png_masks((dir / "empty").string()), "no *.png files");
  }
  fs::remove_all(dir);
}

#include "irepa/io/image_grid.hpp"

TEST_CASE("image grids tile a batch with borders and map the value range to 0..255", "[io][png]") {
  Tensor<float> imgs(Shape{5, 3, 4, 6});
  for (std::int64_t i = 0; i < imgs.numel(); ++i) imgs[i] = -1.0f + 2.0f * static_cast<float>(i % 7) / 6.0f;
  imgs[0] = 5.0f;  // clamped
  const auto g = io::image_grid<float>(imgs, io::GridOptions{.columns = 3, .padding = 1});
  REQUIRE(g.shape() == Shape{2 * 4 + 3, 3 * 6 + 4, 3});
  CHECK(g(0, 0, 0) == 255);                 // border
  CHECK(g(1, 1, 0) == 255);                 // image 0, (0, 0), red: 5.0 clamped to 1
  CHECK(g(1, 2, 0) == std::lround(255.0 * (1.0 / 6.0)));  // value index 1 -> -1 + 2/6
  // image 4 sits at row 1, column 1: top-left pixel of its green channel
  const std::int64_t i4 = ((4 * 3 + 1) * 4 + 0) * 6 + 0;
  CHECK(g(1 + 4 + 1, 1 + 6 + 1 + 1 - 1, 1) == std::lround(255.0 * (static_cast<double>(i4 % 7) / 6.0)));
  CHECK(g(10, 21, 2) == 255);  // the empty sixth cell stays background
  // scale 3: every source pixel becomes a 3x3 block
  const auto g3 = io::image_grid<float>(imgs, io::GridOptions{.columns = 3, .padding = 1, .scale = 3});
  REQUIRE(g3.shape() == Shape{2 * 12 + 3, 3 * 18 + 4, 3});
  for (std::int64_t y = 0; y < 12; ++y)
    for (std::int64_t x = 0; x < 18; ++x) REQUIRE(g3(1 + y, 1 + x, 1) == g(1 + y / 3, 1 + x / 3, 1));
  REQUIRE_IREPA_ERROR(io::image_grid<float>(imgs, io::GridOptions{.scale = 0}), "scale 0");
  const auto dir = temp_dir("irepa_grid");
  io::write_image_grid<float>((dir / "grid.png").string(), imgs);
  const auto back = io::read_png((dir / "grid.png").string());
  CHECK(back.mode == "RGB");
  fs::remove_all(dir);
}
