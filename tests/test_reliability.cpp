// Bad input to the readers, each class from the reliability issue built as a reproducer: sizes
// that wrap, deep or duplicated JSON, FIFOs, decompression bombs, empty grids, absurd thread
// counts. Every case expects an irepa::Error naming what was wrong. test_parsers_asan builds
// these again under ASan + UBSan; the trainer's faults (checkpoint metadata, run folders, resume,
// non-finite numbers) are in test_run_faults.cpp.

#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "irepa/core/checked.hpp"
#include "irepa/core/context.hpp"
#include "irepa/data/idx.hpp"
#include "irepa/data/fashion_mnist.hpp"
#include "irepa/io/image_grid.hpp"
#include "irepa/io/json.hpp"
#include "irepa/io/npy.hpp"
#include "irepa/io/safetensors.hpp"
#include "fault_test_support.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

using test::draw;
using test::write_bytes;

/// A safetensors image with the given header text and data bytes.
std::string safetensors_image(const std::string& header, std::size_t data_bytes) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out += header;
  out.append(data_bytes, '\x01');
  return out;
}

io::SafeTensorsFile open_st(const std::string& bytes) {
  return io::SafeTensorsFile(std::as_bytes(std::span(bytes.data(), bytes.size())), "test.safetensors");
}

std::string gzip(const std::string& raw) {
  uLongf n = compressBound(static_cast<uLong>(raw.size())) + 64;
  std::string out(n, '\0');
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(n);
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string idx_header(std::vector<std::uint32_t> dims) {
  std::string h = {'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) h += static_cast<char>((d >> s) & 0xff);
  return h;
}

}  // namespace

TEST_CASE("checked sizes: products that would wrap are errors naming the source and the numbers", "[reliability]") {
  const std::int64_t big = std::int64_t{1} << 40;
  REQUIRE_IREPA_ERROR(checked_mul(big, big, "here"), "here", "too large");
  REQUIRE_IREPA_ERROR(checked_add(kMaxSize, 1, "sum"), "sum");
  const std::vector<std::int64_t> wrap = {4, std::int64_t{1} << 62, std::int64_t{1} << 62};
  REQUIRE_IREPA_ERROR(checked_numel(wrap, "dims"), "dims", "[4, 4611686018427387904, 4611686018427387904]");
  REQUIRE_IREPA_ERROR((Shape{1 << 30, 1 << 30, 1 << 30}), "Shape");
  // A shape that fits but whose bytes do not: refused before any allocation.
  REQUIRE_IREPA_ERROR((Tensor<double>(Shape{std::int64_t{1} << 31, std::int64_t{1} << 31})), "Tensor");
  Shape s{3, 5};
  s[0] = std::int64_t{1} << 61;  // a shape edited in place is checked when counted
  REQUIRE_IREPA_ERROR((void)s.numel(), "Shape");
  const std::int64_t a = draw(1, 1001), b = draw(1, 1001);
  CHECK(checked_mul(a, b, "x") == a * b);
  const std::vector<std::int64_t> ok = {a, b, 3};
  CHECK(checked_nbytes(ok, 4, "x") == a * b * 12);
}

TEST_CASE("safetensors: a wrapping shape, a deep header, duplicate keys and bad entries are errors, not crashes", "[reliability]") {
  // [4, 2^62, 2^62] F32 with no data: 4 * 4 * 2^124 wraps to 0 in 128 bits.
  REQUIRE_IREPA_ERROR(open_st(safetensors_image(R"({"w":{"dtype":"F32","shape":[4,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})", 0)),
                      "tensor 'w'", "more elements than can exist");
  // A deeply nested shape: refused by depth, never printed or recursed into.
  const int depth = 100000 + static_cast<int>(draw(0, 1000));
  const std::string deep = R"({"w":{"dtype":"F32","shape":)" + std::string(static_cast<std::size_t>(depth), '[') +
                           std::string(static_cast<std::size_t>(depth), ']') + R"(,"data_offsets":[0,0]}})";
  REQUIRE_IREPA_ERROR(open_st(safetensors_image(deep, 0)), "nested deeper than 32");
  // The same key twice: JSON parsers keep one silently; the file is ambiguous.
  REQUIRE_IREPA_ERROR(open_st(safetensors_image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
                      "key 'w' twice");
  // A shape entry that is a structure: named by type, not dumped.
  REQUIRE_IREPA_ERROR(open_st(safetensors_image(R"({"w":{"dtype":"F32","shape":[{"a":[1,2,3]}],"data_offsets":[0,4]}})", 4)),
                      "a JSON object", "not a non-negative integer");
  REQUIRE_IREPA_ERROR(open_st(safetensors_image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4)), "8 bytes", "span 4");
  // And a good one still reads.
  const float v = static_cast<float>(draw(0, 1000)) + 0.5f;
  std::string good = safetensors_image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 0);
  good.append(reinterpret_cast<const char*>(&v), 4);
  CHECK(open_st(good).load<float>("w")[0] == v);
}

TEST_CASE("inputs must be regular files: a FIFO or a folder is refused at once, never waited on", "[reliability]") {
  const fs::path d = test::fault_dir("fifo");
  const fs::path fifo = d / "input.fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // With no writer, opening a FIFO for reading would block forever.
  REQUIRE_IREPA_ERROR(io::SafeTensorsFile(fifo.string()), "a FIFO", "regular file");
  REQUIRE_IREPA_ERROR(io::NpyFile(fifo.string()), "a FIFO");
  REQUIRE_IREPA_ERROR(data::read_idx_u8(fifo.string()), "a FIFO");
  REQUIRE_IREPA_ERROR(io::read_png(fifo.string()), "a FIFO");
  REQUIRE_IREPA_ERROR(io::read_regular_file(fifo.string(), "config"), "config", "a FIFO");
  REQUIRE_IREPA_ERROR(io::SafeTensorsFile(d.string()), "a folder");
  fs::remove_all(d);
}

TEST_CASE("npy: a shape whose product wraps, and digits that overflow, are errors before anything is read", "[reliability]") {
  auto npy = [](const std::string& shape) {
    std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
    h.append(63 - (10 + h.size()) % 64, ' ');
    h += '\n';
    std::string out = "\x93NUMPY";
    out += '\x01';
    out += '\0';
    out += static_cast<char>(h.size() & 0xff);
    out += static_cast<char>(h.size() >> 8);
    return out + h + std::string(64, '\0');
  };
  auto open = [](const std::string& b) { return io::NpyFile(std::as_bytes(std::span(b.data(), b.size())), "x.npy"); };
  // 2^32 cubed wraps a 64-bit product to 0, which the 64 data bytes would "hold".
  REQUIRE_IREPA_ERROR(open(npy("(4294967296, 4294967296, 4294967296)")), "x.npy", "more elements than can exist");
  REQUIRE_IREPA_ERROR(open(npy("(99999999999999999999999,)")), "x.npy", "too large");
  REQUIRE_IREPA_ERROR(open(npy("(100,)")), "truncated");
  // Empty, with other extents whose product passes 64 bits (the fuzzer's find: the row-major
  // strides overflowed, undefined behaviour that UBSan stops on): read as an empty array.
  const auto empty = open(npy("(0, 17520280980, 9999999992)"));
  CHECK(empty.shape().numel() == 0);
  CHECK(empty.load<float>().numel() == 0);
  const std::int64_t n = draw(1, 17);
  CHECK(open(npy("(" + std::to_string(n) + ",)")).shape() == Shape{n});
}

TEST_CASE("idx.gz: a decompression bomb stops one byte past the header's claim, and an impossible claim before inflating", "[reliability]") {
  const fs::path d = test::fault_dir("bomb");
  // A 10-byte claim followed by 64 MiB of zeros (64 KiB compressed).
  const std::string bomb = gzip(idx_header({10}) + std::string(64u << 20, '\0'));
  write_bytes(d / "bomb.gz", bomb);
  REQUIRE(fs::file_size(d / "bomb.gz") < (1u << 20));
  REQUIRE_IREPA_ERROR(data::read_idx_u8((d / "bomb.gz").string()), "bomb.gz", "declares 10 elements but holds more");
  // A claim that no file of this size can inflate to is refused before anything is allocated.
  write_bytes(d / "claim.gz", gzip(idx_header({60000, 28, 28, 100}) + "xyz"));
  REQUIRE_IREPA_ERROR(data::read_idx_u8((d / "claim.gz").string()), "claim.gz", "declares 4704000000 elements", "can hold");
  // A plain (not gzip) file is held to its own size.
  write_bytes(d / "plain", idx_header({1000}) + "abc");
  REQUIRE_IREPA_ERROR(data::read_idx_u8((d / "plain").string()), "declares 1000 elements");
  // Two gzip members (as gzread reads them) still make one file.
  const std::uint8_t k = static_cast<std::uint8_t>(draw(1, 251));
  write_bytes(d / "two.gz", gzip(idx_header({2, 2}) + std::string(1, static_cast<char>(k))) + gzip(std::string(3, static_cast<char>(k))));
  const auto t = data::read_idx_u8((d / "two.gz").string());
  CHECK(t.shape() == Shape{2, 2});
  for (std::int64_t i = 0; i < 4; ++i) CHECK(t[i] == k);
  fs::remove_all(d);
}

TEST_CASE("resource requests: an empty sample grid and absurd thread counts are errors with the limit", "[reliability]") {
  Tensor<double> none(Shape{0, 1, 8, 8});
  REQUIRE_IREPA_ERROR(io::image_grid<double>(none.cview()), "at least one image");
  REQUIRE_IREPA_ERROR(CpuContext(100000), "100000 threads", "the limit is");
  CpuContext ok(2);
  CHECK(ok.threads() == 2);
}

TEST_CASE("JSON from untrusted text: nesting limited, duplicate keys refused, messages brief", "[reliability]") {
  REQUIRE_IREPA_ERROR(io::parse_json(std::string(1000000, '['), "deep"), "deep", "nested deeper than 32");
  REQUIRE_IREPA_ERROR(io::parse_json(R"({"x": {"k": 1, "k": 2}})", "dup"), "key 'k' twice");
  REQUIRE_IREPA_ERROR(io::parse_json("{\"a\": " + std::string(100000, '1') + "x}", "long"), "long", "not valid JSON");
  const auto v = io::parse_json(R"({"a": [1, {"b": [2, 3]}], "c": {"a": 1}})", "ok");  // the same key in two objects is fine
  CHECK(v["a"][1]["b"][1] == 3);
  CHECK(io::json_brief(v).find("a JSON object") != std::string::npos);
}
