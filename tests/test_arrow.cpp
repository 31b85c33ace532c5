// The reference's Hugging Face save_to_disk folders read directly: the Arrow IPC stream reader
// against files written by an independent writer (npm apache-arrow, scripts/make_arrow_fixtures.mjs),
// the image and latent datasets and their pairing, and what corrupt, truncated or mismatched
// folders get (including a sweep of random corruptions: an error or the same data, never a crash).

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "irepa/data/hf_dataset.hpp"
#include "irepa/io/safetensors.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

const fs::path kArrow = fs::path(IREPA_TEST_DATA_DIR) / "arrow";

fs::path arrow_temp_dir(const std::string& name) {
  const auto d = fs::temp_directory_path() / ("irepa_arrow_" + name + "_" + std::to_string(::getpid()) + "_" + std::to_string(test::rng().seed()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<char> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_all(const fs::path& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

std::vector<std::int64_t> all_rows(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

}  // namespace

TEST_CASE("Arrow IPC streams from another writer: schema, batches, columns of the reference's datasets", "[arrow]") {
  const io::ArrowStreamFile f((kArrow / "imagenet-latents-images" / "data-00000-of-00002.arrow").string());
  REQUIRE(f.fields().size() == 2);
  CHECK(f.fields()[0].name == "image");
  CHECK(f.fields()[0].type_name() == "struct<bytes: binary, path: string>");
  CHECK(f.fields()[1].type_name() == "int64");
  CHECK(f.metadata().at("huggingface").find("ClassLabel") != std::string::npos);
  CHECK(f.rows() == 4);
  CHECK(f.batches().size() == 2);  // the fixture writes two record batches per file
  const auto [b, i] = f.locate(3);
  CHECK(b->first_row == 2);
  CHECK(i == 1);
  const io::ArrowArray& img = b->columns[0];
  CHECK(io::arrow_bytes(img.children[1], i).size() == std::string("train/00003.png").size());
  const io::ArrowStreamFile l((kArrow / "imagenet-latents-sdvae-ft-mse-f8d4" / "data-00000-of-00002.arrow").string());
  CHECK(l.fields()[0].type_name() == "list<list<list<float32>>>");
  const io::ArrowStreamFile x((kArrow / "latents-fixed-size" / "data-00000-of-00001.arrow").string());
  CHECK(x.fields()[0].type_name() == "fixed_size_list<fixed_size_list<fixed_size_list<float32, 4>, 4>, 8>");
}

TEST_CASE("HfImageDataset and HfLatentDataset give the fixture's images, posteriors and labels, paired as HFImgLatentDataset", "[arrow][data]") {
  io::SafeTensorsFile want((kArrow / "expected.safetensors").string());
  for (const char* split : {"train", "val"}) {
    INFO(split);
    const std::string sub = std::string(split) == "val" ? "val" : "";
    const std::string pre = std::string(split) == "val" ? "val_" : "";
    const data::HfImageDataset images((kArrow / "imagenet-latents-images" / sub).string(), 0, 2);
    const data::HfLatentDataset latents((kArrow / "imagenet-latents-sdvae-ft-mse-f8d4" / sub).string());
    const auto wi = want.load<std::uint8_t>(pre + "images");
    const auto wp = want.load<float>(pre + "posteriors");
    const auto wl = want.load<std::int64_t>(pre + "labels");
    REQUIRE(images.size() == wi.size(0));
    REQUIRE(latents.size() == wi.size(0));
    CHECK(images.sample_shape() == Shape{3, 32, 32});
    CHECK(latents.sample_shape() == Shape{8, 4, 4});
    CHECK(latents.kind() == "posteriors");
    const auto idx = all_rows(images.size());
    const auto bi = images.get<float>(idx);
    for (std::int64_t k = 0; k < wi.numel(); ++k) REQUIRE(bi.x[k] == static_cast<float>(wi[k]));
    for (std::int64_t k = 0; k < wl.numel(); ++k) CHECK(bi.y[k] == wl[k]);
    const auto bl = latents.get<double>(idx);
    for (std::int64_t k = 0; k < wp.numel(); ++k) REQUIRE(bl.x[k] == static_cast<double>(wp[k]));
    CHECK(bl.y[0] == -1);  // no label column beside the latents
    const data::PairedDataset paired(images, latents);
    const auto pb = paired.get<float>({2, 0});
    CHECK(pb.y[0] == wl[2]);
    CHECK(pb.y[1] == wl[0]);
    CHECK(pb.images.shape() == Shape{2, 3, 32, 32});
    CHECK(pb.x[0] == wp[2 * 128]);
  }
  // The same latents stored as fixed-size lists read the same.
  const data::HfLatentDataset fixed((kArrow / "latents-fixed-size").string());
  const auto a = fixed.get<float>(all_rows(fixed.size()));
  const auto wp = want.load<float>("posteriors");
  CHECK(test::rel_error(a.x, wp) == 0);
  // Cropped on the way in when a resolution is given.
  const data::HfImageDataset cropped((kArrow / "imagenet-latents-images").string(), 16);
  CHECK(cropped.sample_shape() == Shape{3, 16, 16});
}

TEST_CASE("Hugging Face folders that do not fit are named: columns, shapes, sizes, counts, listed files", "[arrow][data]") {
  REQUIRE_IREPA_ERROR(data::HfLatentDataset((kArrow / "latents-odd-channels").string()), "latents-odd-channels", "[3, 4, 4]",
                      "[2E, h, w]");
  const data::HfImageDataset mixed((kArrow / "images-mixed-sizes").string());
  REQUIRE_IREPA_ERROR((void)mixed.get<float>({0, 1}), "row 1", "16x16", "32x32");
  REQUIRE_IREPA_ERROR(data::HfImageDataset((kArrow / "imagenet-latents-sdvae-ft-mse-f8d4").string()), "no column 'image'",
                      "data: list<list<list<float32>>>");
  const data::HfImageDataset images((kArrow / "imagenet-latents-images").string());
  const data::HfLatentDataset val((kArrow / "imagenet-latents-sdvae-ft-mse-f8d4" / "val").string());
  REQUIRE_IREPA_ERROR(data::PairedDataset(images, val), "7 images and 3 latents");
  const auto dir = arrow_temp_dir("state");
  fs::copy(kArrow / "imagenet-latents-images", dir / "imgs", fs::copy_options::recursive);
  fs::remove(dir / "imgs" / "data-00001-of-00002.arrow");
  REQUIRE_IREPA_ERROR(data::HfImageDataset((dir / "imgs").string()), "data-00001-of-00002.arrow");
  std::ofstream(dir / "imgs" / "state.json") << R"({"_data_files": [{"filename": "../../etc/passwd"}]})";
  REQUIRE_IREPA_ERROR(data::HfImageDataset((dir / "imgs").string()), "expected a file name in its folder");
  std::ofstream(dir / "imgs" / "state.json") << R"({"_data_files": 3})";
  REQUIRE_IREPA_ERROR(data::HfImageDataset((dir / "imgs").string()), "state.json with _data_files");
  fs::remove_all(dir);
}

TEST_CASE("truncated and corrupt Arrow files: an error naming the file and offset, or data whose bounds hold, never a crash", "[arrow][fuzz]") {
  const fs::path src = kArrow / "imagenet-latents-sdvae-ft-mse-f8d4" / "data-00000-of-00002.arrow";
  const auto bytes = read_all(src);
  const io::ArrowStreamFile good(src.string());
  const auto dir = arrow_temp_dir("corrupt");
  const fs::path p = dir / "x.arrow";
  // Every truncation point: refused (the end-of-stream marker is required).
  for (std::size_t cut = 0; cut < bytes.size(); cut += 1 + cut / 16) {
    INFO("cut at " << cut);
    write_all(p, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut)));
    REQUIRE_IREPA_ERROR(io::ArrowStreamFile(p.string()), p.c_str());
  }
  // Random corruptions of fresh bytes at fresh places: each parse ends in an irepa::Error, or reads
  // back a stream whose latents can all be read (bounds held).
  int errors = 0, parsed = 0;
  for (int round = 0; round < 400; ++round) {
    auto b = bytes;
    Tensor<std::int64_t> r(Shape{6});
    test::rng().randint(r.view(), 0, std::numeric_limits<std::int64_t>::max());
    const int flips = 1 + static_cast<int>(r[0] % 4);
    for (int k = 0; k < flips; ++k) b[static_cast<std::size_t>(r[1 + k] % static_cast<std::int64_t>(b.size()))] = static_cast<char>(r[5] >> (8 * k));
    write_all(p, b);
    try {
      const io::ArrowStreamFile f(p.string());
      for (const auto& batch : f.batches())
        for (std::int64_t i = 0; i < batch.length; ++i) {
          std::vector<std::int64_t> shape;
          try {
            (void)io::arrow_float_tensor(batch.columns.at(0), i, shape, "x");
          } catch (const Error&) {
          }
        }
      ++parsed;
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Catch::Matchers::Contains(p.string()));
      ++errors;
    }
  }
  CHECK(errors > 0);
  CHECK(errors + parsed == 400);
  // The pre-0.15 framing (no continuation marker) puts the metadata at byte 4: misaligned for
  // flatbuffers, refused (found by scripts/fuzz.sh under UBSan).
  write_all(p, std::vector<char>(bytes.begin() + 4, bytes.end()));
  REQUIRE_IREPA_ERROR(io::ArrowStreamFile(p.string()), "byte 4", "8-byte boundary");
  // The same bytes from memory as from the file.
  const io::ArrowStreamFile mem(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()), "in memory");
  CHECK(mem.rows() == good.rows());
  CHECK(mem.fields()[0].type_name() == good.fields()[0].type_name());
  REQUIRE(::mkfifo((dir / "fifo.arrow").c_str(), 0600) == 0);
  REQUIRE_IREPA_ERROR(io::ArrowStreamFile((dir / "fifo.arrow").string()), "not a regular file");
  fs::remove_all(dir);
}
