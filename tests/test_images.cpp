// The image data path: JPEG and PNG decoding to RGB and ADM's center_crop_arr against Pillow
// (tests/data/images, scripts/golden/make_image_cases.py), the ImageFolder listing as
// torchvision's, images paired with latents, and what broken inputs get.

#include <zlib.h>

#include <filesystem>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

#include "irepa/data/image_folder.hpp"
#include "irepa/io/image_decode.hpp"
#include "irepa/io/pil_resize.hpp"
#include "irepa/io/png.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

const fs::path kImages = fs::path(IREPA_TEST_DATA_DIR) / "images";
const char* kFiles[] = {"rgb420.jpg", "rgb444_progressive.jpg", "grey.jpg", "cmyk.jpg", "odd_upscale.jpg",
                        "rgb.png",    "grey.png",               "palette.png", "rgba.png", "grey16.png"};

std::string key(std::string name) {
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

std::int64_t max_diff(ConstView<std::uint8_t> a, ConstView<std::uint8_t> b) {
  std::int64_t d = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) d = std::max<std::int64_t>(d, std::abs(int(a.data()[i]) - int(b.data()[i])));
  return d;
}

fs::path temp_dir(const std::string& name) {
  const auto d = fs::temp_directory_path() / ("irepa_images_" + name + "_" + std::to_string(::getpid()) + "_" + std::to_string(test::rng().seed()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST_CASE("JPEG and PNG decode to Pillow's convert('RGB') pixels, and center_crop_arr crops as ADM's", "[images]") {
  io::SafeTensorsFile want((kImages / "expected.safetensors").string());
  for (const char* name : kFiles) {
    INFO(name);
    const auto rgb = io::read_image_rgb((kImages / name).string());
    const auto ref = want.load<std::uint8_t>("rgb." + key(name));
    REQUIRE(rgb.shape() == ref.shape());
    CHECK(max_diff(rgb, ref) == 0);
    for (const std::int64_t size : {16, 8}) {
      INFO("crop " << size);
      const auto crop = io::center_crop_arr(rgb, size);
      const auto cref = want.load<std::uint8_t>((size == 16 ? "crop." : "crop8.") + key(name));
      REQUIRE(crop.shape() == cref.shape());
      CHECK(max_diff(crop, cref) == 0);
    }
  }
}

TEST_CASE("pil_resize: each channel of an RGB image as its own grey image, box halving as the 2x2 mean", "[images]") {
  const auto rgb = test::rand_uniform<double>(Shape{23, 30, 3}, 0.0, 255.0);
  Tensor<std::uint8_t> img(rgb.shape());
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(rgb[i]);
  for (const auto f : {io::ResizeFilter::Bicubic, io::ResizeFilter::Box, io::ResizeFilter::Bilinear, io::ResizeFilter::Nearest}) {
    const auto all = io::pil_resize(img, 11, 17, f);
    for (std::int64_t c = 0; c < 3; ++c) {
      Tensor<std::uint8_t> grey(Shape{23, 30});
      for (std::int64_t p = 0; p < 23 * 30; ++p) grey[p] = img[p * 3 + c];
      const auto one = io::pil_resize(grey, 11, 17, f);
      for (std::int64_t p = 0; p < 11 * 17; ++p) REQUIRE(one[p] == all[p * 3 + c]);
    }
  }
  Tensor<std::uint8_t> two(Shape{2, 8, 3});
  for (std::int64_t i = 0; i < two.numel(); ++i) two[i] = img[i];
  const auto h = io::pil_resize(two, 1, 4, io::ResizeFilter::Box);
  // Pillow rounds each pass half up: the row pairs first, then the two rows.
  for (std::int64_t x = 0; x < 4; ++x)
    for (std::int64_t c = 0; c < 3; ++c) {
      const int r0 = (1 + two[(2 * x) * 3 + c] + two[(2 * x + 1) * 3 + c]) / 2;
      const int r1 = (1 + two[(8 + 2 * x) * 3 + c] + two[(8 + 2 * x + 1) * 3 + c]) / 2;
      CHECK(int(h[x * 3 + c]) == (1 + r0 + r1) / 2);
    }
  REQUIRE_IREPA_ERROR((void)io::pil_resize(img, 0, 4, io::ResizeFilter::Box), "pil_resize", "0x4");
}

TEST_CASE("broken images: truncated and corrupt files, other formats, FIFOs and bombs get errors that name them", "[images]") {
  const auto dir = temp_dir("broken");
  for (const char* name : {"rgb420.jpg", "rgb444_progressive.jpg", "rgb.png", "palette.png"}) {
    INFO(name);
    auto bytes = io::read_file_bytes((kImages / name).string());
    const fs::path cut = dir / (std::string("cut_") + name);
    write_bytes(cut, std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() * 2 / 3)));
    REQUIRE_IREPA_ERROR((void)io::read_image_rgb(cut.string()), cut.c_str(), "truncated");
    // Fresh garbage in the middle of the data.
    Tensor<std::int64_t> junk(Shape{64});
    test::rng().randint(junk.view(), 0, 256);
    for (std::int64_t i = 0; i < 64; ++i) bytes[bytes.size() / 2 + static_cast<std::size_t>(i) - 32] = static_cast<std::uint8_t>(junk[i]);
    const fs::path bad = dir / (std::string("bad_") + name);
    write_bytes(bad, bytes);
    try {
      (void)io::read_image_rgb(bad.string());
      // Entropy-coded JPEG data can absorb garbage without a decoder error; PNG's CRCs cannot.
      CHECK(std::string(name).ends_with(".jpg"));
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Catch::Matchers::Contains(bad.string()));
    }
  }
  write_bytes(dir / "text.jpg", {'h', 'e', 'l', 'l', 'o'});
  REQUIRE_IREPA_ERROR((void)io::read_image_rgb((dir / "text.jpg").string()), "neither JPEG nor PNG");
  REQUIRE(::mkfifo((dir / "fifo.png").c_str(), 0600) == 0);
  REQUIRE_IREPA_ERROR((void)io::read_image_rgb((dir / "fifo.png").string()), "not a regular file");
  // A PNG header claiming 100000 x 100000 pixels: refused before anything is allocated.
  std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  const std::uint8_t ihdr[] = {'I', 'H', 'D', 'R', 0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0, 8, 2, 0, 0, 0};
  png.insert(png.end(), ihdr + 4, ihdr + sizeof ihdr);
  const auto crc = static_cast<std::uint32_t>(::crc32(0, ihdr, sizeof ihdr));
  for (int s = 24; s >= 0; s -= 8) png.push_back(static_cast<std::uint8_t>(crc >> s));
  const std::uint8_t idat[] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};  // empty, with its CRC: the header is read whole
  png.insert(png.end(), idat, idat + sizeof idat);
  write_bytes(dir / "bomb.png", png);
  REQUIRE_IREPA_ERROR((void)io::read_image_rgb((dir / "bomb.png").string()), "100000x100000", "decompression bomb");
  fs::remove_all(dir);
}

TEST_CASE("ImageFolder lists as torchvision's ImageFolder and yields center-cropped channels-first images", "[images][data]") {
  const auto root = temp_dir("folder");
  fs::create_directories(root / "n02_b" / "deep");
  fs::create_directories(root / "n01_a" / "sub");
  fs::create_directories(root / "n01_a" / "sub-2");
  fs::copy_file(kImages / "rgb.png", root / "n02_b" / "z.png");
  fs::copy_file(kImages / "grey.jpg", root / "n02_b" / "deep" / "a.jpeg");
  fs::copy_file(kImages / "rgb420.jpg", root / "n01_a" / "y.JPG");
  fs::copy_file(kImages / "cmyk.jpg", root / "n01_a" / "sub" / "x.jpg");
  fs::copy_file(kImages / "palette.png", root / "n01_a" / "sub-2" / "w.png");
  write_bytes(root / "n01_a" / "notes.txt", {'x'});  // not an image: skipped, as torchvision does
  const data::ImageFolder ds(root.string(), 16, 2);
  CHECK(ds.classes() == std::vector<std::string>{"n01_a", "n02_b"});
  REQUIRE(ds.size() == 5);
  const std::vector<fs::path> order = {root / "n01_a" / "y.JPG", root / "n01_a" / "sub" / "x.jpg", root / "n01_a" / "sub-2" / "w.png",
                                       root / "n02_b" / "z.png", root / "n02_b" / "deep" / "a.jpeg"};
  for (std::size_t i = 0; i < order.size(); ++i) CHECK(ds.paths()[i] == order[i].string());
  CHECK(ds.sample_shape() == Shape{3, 16, 16});
  const auto b = ds.get<float>({3, 1, 4});
  CHECK(b.y[0] == 1);
  CHECK(b.y[1] == 0);
  CHECK(b.y[2] == 1);
  io::SafeTensorsFile want((kImages / "expected.safetensors").string());
  const char* src[] = {"rgb.png", "cmyk.jpg", "grey.jpg"};
  for (std::int64_t i = 0; i < 3; ++i) {
    const auto ref = want.load<std::uint8_t>(std::string("crop.") + key(src[i]));  // [16, 16, 3]
    for (std::int64_t p = 0; p < 256; ++p)
      for (std::int64_t c = 0; c < 3; ++c) REQUIRE(b.x[(i * 3 + c) * 256 + p] == static_cast<float>(ref[p * 3 + c]));
  }

  // What is refused when the folder opens: an unread format, an empty class, no classes.
  fs::copy_file(kImages / "rgb.png", root / "n02_b" / "deep" / "q.webp");
  REQUIRE_IREPA_ERROR(data::ImageFolder(root.string(), 16), "q.webp", "only JPEG and PNG");
  fs::remove(root / "n02_b" / "deep" / "q.webp");
  fs::create_directories(root / "n03_empty" / "nothing");
  REQUIRE_IREPA_ERROR(data::ImageFolder(root.string(), 16), "n03_empty", "holds no image");
  const auto bare = temp_dir("bare");
  REQUIRE_IREPA_ERROR(data::ImageFolder(bare.string(), 16), "no class folder");
  REQUIRE_IREPA_ERROR(data::ImageFolder((bare / "missing").string(), 16), "not a folder");
  // A corrupt image is found when its batch is read, named, on any of the decoding threads.
  fs::remove_all(root / "n03_empty");
  write_bytes(root / "n02_b" / "deep" / "broken.png", {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0});
  const data::ImageFolder with_broken(root.string(), 16, 3);
  REQUIRE_IREPA_ERROR((void)with_broken.get<float>({0, 1, 2, 3, 4, 5}), "broken.png", "corrupt or truncated");
  fs::remove_all(root);
  fs::remove_all(bare);
}

TEST_CASE("PairedDataset: latents and images of the same samples, counts and labels checked", "[images][data]") {
  const auto root = temp_dir("paired");
  fs::create_directories(root / "img" / "c0");
  fs::create_directories(root / "img" / "c1");
  fs::copy_file(kImages / "rgb.png", root / "img" / "c0" / "a.png");
  fs::copy_file(kImages / "rgb420.jpg", root / "img" / "c1" / "b.jpg");
  fs::copy_file(kImages / "grey.png", root / "img" / "c1" / "c.png");
  const data::ImageFolder images((root / "img").string(), 16);
  auto shard = [&](const std::string& name, std::int64_t n, std::vector<std::int64_t> labels) {
    fs::create_directories(root / name);
    io::SafeTensorsWriter w;
    w.add<float>("posteriors", test::randn<float>(Shape{n, 8, 2, 2}));
    Tensor<std::int64_t> y(Shape{n});
    for (std::int64_t i = 0; i < n; ++i) y[i] = labels[static_cast<std::size_t>(i)];
    w.add<std::int64_t>("labels", y);
    w.write((root / name / "0.safetensors").string());
    return data::ShardedDataset((root / name).string());
  };
  const auto lat = shard("lat", 3, {0, 1, 1});
  const data::PairedDataset paired(images, lat);
  CHECK(paired.kind() == "posteriors");
  CHECK(paired.image_shape() == Shape{3, 16, 16});
  const auto b = paired.get<float>({2, 0});
  REQUIRE(b.images.shape() == Shape{2, 3, 16, 16});
  const auto img2 = images.image(2);
  for (std::int64_t k = 0; k < img2.numel(); ++k) REQUIRE(b.images[k] == static_cast<float>(img2[k]));
  const auto fewer = shard("fewer", 2, {0, 1});
  REQUIRE_IREPA_ERROR(data::PairedDataset(images, fewer), "3 images and 2 latents");
  const auto swapped = shard("swapped", 3, {1, 1, 0});
  const data::PairedDataset bad(images, swapped);
  REQUIRE_IREPA_ERROR((void)bad.get<float>({1, 0}), "sample 0 has label 1 with its latents and 0 with its image");
  fs::remove_all(root);
}
