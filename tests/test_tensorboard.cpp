// TensorBoard event files: the TFRecord framing (CRC-32C against the published check values
// and a bit-by-bit CRC written here, damaged and cut streams refused), and EventFileWriter's
// files (new name per writer, one record per call, arguments checked). The CLI test decodes a
// run's file with protoc --decode_raw (test_train_cli.cpp).

#include <cstdint>
#include <filesystem>
#include <string>

#include "irepa/io/files.hpp"
#include "irepa/io/png.hpp"
#include "irepa/io/tfrecord.hpp"
#include "irepa/train/run_folder.hpp"
#include "irepa/train/tensorboard.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {
/// CRC-32C one bit at a time: independent of the library's table.
std::uint32_t crc32c_bitwise(std::string_view s) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (const char ch : s) {
    c ^= static_cast<std::uint8_t>(ch);
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}

std::string random_bytes(std::size_t n) {
  Tensor<std::int64_t> v(Shape{static_cast<std::int64_t>(n)});
  test::rng().randint(v.view(), 0, 256);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(v[static_cast<std::int64_t>(i)]);
  return s;
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / (name + "_" + std::to_string(test::rng().seed()) + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}
}  // namespace

TEST_CASE("crc32c matches the published check values and a bitwise CRC on random bytes", "[tensorboard]") {
  CHECK(io::crc32c("123456789") == 0xE3069283u);                  // the CRC catalogue's check value
  CHECK(io::crc32c(std::string(32, '\0')) == 0x8A9136AAu);        // RFC 3720, B.4
  CHECK(io::crc32c(std::string(32, '\xff')) == 0x62A8AB43u);      // RFC 3720, B.4
  for (const std::size_t n : {1u, 7u, 64u, 1000u}) {
    const std::string s = random_bytes(n);
    CHECK(io::crc32c(s) == crc32c_bitwise(s));
    const std::uint32_t c = crc32c_bitwise(s);
    CHECK(io::masked_crc32c(s) == ((c >> 15) | (c << 17)) + 0xa282ead8u);
  }
}

TEST_CASE("TFRecord frames round-trip, and damaged or cut streams are refused", "[tensorboard][parsers]") {
  std::vector<std::string> data;
  std::string stream;
  for (const std::size_t n : {0u, 1u, 33u, 513u}) {
    data.push_back(random_bytes(n));
    stream += io::tfrecord_frame(data.back());
  }
  const auto recs = io::read_tfrecords(stream, "round trip");
  REQUIRE(recs.size() == data.size());
  for (std::size_t i = 0; i < data.size(); ++i) CHECK(recs[i] == data[i]);

  // Any flipped byte is caught by one of the two CRCs (or makes the length impossible).
  for (int trial = 0; trial < 50; ++trial) {
    Tensor<std::int64_t> at(Shape{1});
    test::rng().randint(at.view(), 0, static_cast<std::int64_t>(stream.size()));
    std::string bad = stream;
    bad[static_cast<std::size_t>(at[0])] ^= 0x20;
    INFO("flipped byte " << at[0]);
    CHECK_THROWS_AS(io::read_tfrecords(bad, "flipped"), Error);
  }
  // Cut inside the last record: an error naming the record, or the earlier records when a cut
  // tail is allowed (a writer killed mid-record).
  const std::string cut = stream.substr(0, stream.size() - 5);
  CHECK_THROWS_WITH(io::read_tfrecords(cut, "cut"), Catch::Contains("record 3") && Catch::Contains("cut"));
  CHECK(io::read_tfrecords(cut, "cut", /*allow_truncated_tail=*/true).size() == 3);
  CHECK_THROWS_WITH(io::read_tfrecords(stream.substr(0, stream.size() - 520), "short"), Catch::Contains("cut short"));
}

TEST_CASE("EventFileWriter: a new file per writer, one CRC-checked record per call", "[tensorboard]") {
  const fs::path dir = fresh_dir("irepa_tb");
  std::string first, second;
  const double loss = test::rand_uniform<double>(Shape{1}, 0.1, 2.0)[0];
  {
    EventFileWriter a(dir.string()), b(dir.string());  // same second, same process: two names
    first = a.path(), second = b.path();
    a.scalars(3, {{"denoising_loss", loss}, {"lr", 1e-4}});
    a.text(0, "args", "```\n{}\n```");
    Tensor<std::uint8_t> px(Shape{4, 6, 3});
    for (std::int64_t i = 0; i < px.numel(); ++i) px[i] = static_cast<std::uint8_t>(i * 7);
    a.image(5, "samples", io::encode_png(px.cview()), 4, 6, 3);
    a.scalars(6, {});  // nothing to write: no record
    a.flush();
    CHECK(a.records() == 4);  // version, scalars, text, image
    CHECK_THROWS_WITH(a.image(7, "samples", "x", 0, 6, 3), Catch::Contains("samples") && Catch::Contains("0"));
    CHECK_THROWS_WITH(a.image(7, "samples", "x", 4, 6, 4), Catch::Contains("4 channels"));
  }
  CHECK(first != second);
  CHECK(fs::path(first).filename().string().starts_with("events.out.tfevents."));
  const std::string bytes = io::read_regular_file(first, "test");
  const auto recs = io::read_tfrecords(bytes, first);
  REQUIRE(recs.size() == 4);
  // The framing checked again with the bitwise CRC: the data CRC of every record.
  std::size_t at = 0;
  for (const auto& r : recs) {
    at += 12;
    const std::uint32_t c = crc32c_bitwise(r);
    std::uint32_t stored = 0;
    for (int i = 0; i < 4; ++i) stored |= std::uint32_t{static_cast<std::uint8_t>(bytes[at + r.size() + static_cast<std::size_t>(i)])} << (8 * i);
    CHECK(stored == ((c >> 15) | (c << 17)) + 0xa282ead8u);
    at += r.size() + 4;
  }
  CHECK(recs[0].find("brain.Event:2") != std::string_view::npos);
  CHECK(recs[1].find("denoising_loss") != std::string_view::npos);
  CHECK(recs[3].find("\x89PNG") != std::string_view::npos);
  CHECK(io::read_tfrecords(io::read_regular_file(second, "test"), second).size() == 1);  // the version record only
  fs::remove_all(dir);
}

TEST_CASE("EventFileWriter refuses a folder it cannot create", "[tensorboard]") {
  const fs::path dir = fresh_dir("irepa_tb_file");
  fs::create_directories(dir);
  io::write_file_atomic((dir / "plain").string(), "x", "test");
  CHECK_THROWS_WITH(EventFileWriter((dir / "plain" / "run").string()), Catch::Contains("cannot create"));
  fs::remove_all(dir);
}

TEST_CASE("an event file makes a folder a run: a fresh run refuses it, --overwrite removes it", "[tensorboard][reliability]") {
  const fs::path dir = fresh_dir("irepa_tb_run");
  std::string path;
  {
    EventFileWriter w(dir.string());
    w.scalars(1, {{"loss", 0.5}});
    path = w.path();
  }
  CHECK_THROWS_WITH(RunFolder(dir, /*resume=*/false, /*overwrite=*/false),
                    Catch::Contains("already holds a run") && Catch::Contains("events.out.tfevents."));
  CHECK(fs::exists(path));
  { RunFolder resumed(dir, /*resume=*/true, /*overwrite=*/false); }
  CHECK(fs::exists(path));
  {
    RunFolder again(dir, /*resume=*/false, /*overwrite=*/true);
    CHECK(again.cleared() == 1);
  }
  CHECK_FALSE(fs::exists(path));
  fs::remove_all(dir);
}
