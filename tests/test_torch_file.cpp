// torch.save files read without Python: fixtures written by torch 1.13 (scripts/make_torch_fixtures.py),
// compared with the same tensors in safetensors, and pickles built by hand that a reader must
// refuse. test_parsers_asan builds these again under ASan + UBSan; the reference's SiT checkpoint
// loaded into a model, for sampling and for resuming, is in test_torch_checkpoint.cpp.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "irepa/data/latent_stats.hpp"
#include "irepa/io/npy.hpp"
#include "irepa/io/safetensors.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

const fs::path kTorch = fs::path(IREPA_TEST_DATA_DIR) / "torch";

std::vector<std::byte> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}

bool is_float(DType d) { return d == DType::F64 || d == DType::F32 || d == DType::F16 || d == DType::BF16; }

/// Every tensor of `got` equals the same-named one of `want`, element by element, exactly.
void check_same_tensors(const io::TensorFile& got, const io::TensorFile& want) {
  REQUIRE(got.names().size() == want.names().size());
  for (const auto& n : want.names()) {
    INFO("tensor " << n);
    REQUIRE(got.contains(n));
    REQUIRE(got.info(n).shape == want.info(n).shape);
    REQUIRE(got.info(n).dtype == want.info(n).dtype);
    if (is_float(want.info(n).dtype)) {
      const auto a = got.load<double>(n), b = want.load<double>(n);
      for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(a.data()[i] == b.data()[i]);
    } else {
      const auto a = got.load<std::int64_t>(n), b = want.load<std::int64_t>(n);
      for (std::int64_t i = 0; i < a.numel(); ++i) CHECK(a.data()[i] == b.data()[i]);
    }
  }
}


// Pickle builders for hand-made legacy files (the zip layout needs an archive; legacy is a stream).
struct Pickle {
  std::string s = "\x80\x02";
  Pickle& op(char c) { return s += c, *this; }
  Pickle& str(const std::string& v) {
    s += 'X';
    const auto n = static_cast<std::uint32_t>(v.size());
    s.append(reinterpret_cast<const char*>(&n), 4);
    return s += v, *this;
  }
  Pickle& global(const std::string& module, const std::string& name) { return s += "c" + module + "\n" + name + "\n", *this; }
  Pickle& i32(std::int32_t v) {
    s += 'J';
    return s.append(reinterpret_cast<const char*>(&v), 4), *this;
  }
  Pickle& ints(std::initializer_list<std::int32_t> v) {
    op('(');
    for (auto x : v) i32(x);
    return op('t');
  }
  std::string done() { return s + "."; }
};

/// A legacy torch.save file: magic, version, system info, `object` (a pickle), the storage key list
/// and each storage as (int64 numel, bytes).
std::vector<std::byte> legacy_file(const std::string& object, const std::vector<std::pair<std::string, std::vector<float>>>& storages) {
  std::string f(reinterpret_cast<const char*>(io::torch_detail::kLegacyMagic), sizeof io::torch_detail::kLegacyMagic);
  f += Pickle{}.op('M').op('\xe9').op('\x03').done();  // 1001
  f += Pickle{}.op('}').done();                        // system info: empty dict
  f += object;
  Pickle keys;
  keys.op(']').op('(');
  for (const auto& s : storages) keys.str(s.first);
  f += keys.op('e').done();
  for (const auto& s : storages) {
    const std::int64_t n = static_cast<std::int64_t>(s.second.size());
    f.append(reinterpret_cast<const char*>(&n), 8);
    f.append(reinterpret_cast<const char*>(s.second.data()), s.second.size() * 4);
  }
  std::vector<std::byte> b(f.size());
  std::memcpy(b.data(), f.data(), f.size());
  return b;
}

/// {"w": tensor(storage "0" of `numel` floats, offset, size, stride)} as a legacy object pickle.
std::string tensor_dict(std::int32_t numel, std::int32_t offset, std::initializer_list<std::int32_t> size,
                        std::initializer_list<std::int32_t> stride) {
  Pickle p;
  p.op('}').str("w").global("torch._utils", "_rebuild_tensor_v2").op('(');
  p.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").i32(numel).op('N').op('t').op('Q');
  p.i32(offset).ints(size).ints(stride).op('\x89').global("collections", "OrderedDict").op(')').op('R').op('t').op('R').op('s');
  return p.done();
}

}  // namespace

TEST_CASE("torch.save: every dtype, views, offsets and shared storages read as torch wrote them (zip and legacy)", "[torch]") {
  const io::TensorFile want((kTorch / "mixed_expected.safetensors").string());
  for (const char* name : {"mixed.pt", "mixed_legacy.pt"}) {
    INFO(name);
    const io::TensorFile f((kTorch / name).string());
    CHECK(f.is_torch());
    CHECK(f.format() == (std::string(name) == "mixed.pt" ? "torch.save (zip)" : "torch.save (legacy)"));
    check_same_tensors(f, want);
    CHECK_FALSE(f.info("transposed").contiguous());  // read through its strides, not as bytes
    CHECK_FALSE(f.info("expanded").contiguous());
    REQUIRE_IREPA_ERROR((void)f.bytes("transposed"), "strided view");
    CHECK(f.bytes("counts").size() == 24);
    // Into a strided destination, converting: the transposed [5, 6] read into a column-major view.
    Tensor<float> dst(Shape{6, 5});
    f.load_into<float>("transposed", dst.view().transpose(0, 1));
    const auto t = want.load<float>("transposed");
    for (std::int64_t i = 0; i < 5; ++i)
      for (std::int64_t j = 0; j < 6; ++j) CHECK(dst.data()[j * 5 + i] == t.data()[i * 6 + j]);
    REQUIRE_IREPA_ERROR((void)f.load<float>("counts"), "counts", "I64", "expected a float dtype");
  }
}

TEST_CASE("torch.save: a bare tensor (the released spatial-metrics features) is the one tensor 'tensor'", "[torch]") {
  const io::TensorFile f((kTorch / "features.pt").string());
  REQUIRE(f.names() == std::vector<std::string>{"tensor"});
  const auto got = f.load<float>("tensor", Shape{6, 16, 8});
  const auto want = io::NpyFile((kTorch / "features.npy").string()).load<float>();
  REQUIRE(want.shape() == got.shape());
  CHECK(std::memcmp(got.data(), want.data(), sizeof(float) * static_cast<std::size_t>(got.numel())) == 0);
  CHECK(f.metadata().empty());
}

TEST_CASE("torch.save: the reference's latent statistics file is read as it is", "[torch]") {
  const auto st = data::LatentStats::load((kTorch / "latents_stats.pt").string());
  REQUIRE(st.scale.numel() == 4);
  const double scale[] = {0.9, 1.1, 1.2, 0.8}, bias[] = {0.1, -0.2, 0.3, -0.4};
  for (int i = 0; i < 4; ++i) {
    CHECK(st.scale.data()[i] == static_cast<double>(static_cast<float>(scale[i])));
    CHECK(st.bias.data()[i] == static_cast<double>(static_cast<float>(bias[i])));
  }
}

TEST_CASE("torch.save: a forbidden global, a TorchScript archive and a zip without data.pkl are refused by name", "[torch]") {
  REQUIRE_IREPA_ERROR(io::TensorFile((kTorch / "forbidden_global.pt").string()), "'__main__.Payload'", "nothing is executed");
  REQUIRE_IREPA_ERROR(io::TensorFile((kTorch / "torchscript.pt").string()), "TorchScript", "convert_encoder.py");
  REQUIRE_IREPA_ERROR(io::TensorFile((fs::path(IREPA_TEST_DATA_DIR) / "npz" / "numpy_stored.npz").string()), "without <archive>/data.pkl");
}

TEST_CASE("torch.save: every truncation and random byte damage is an Error, never a crash", "[torch]") {
  for (const char* name : {"mixed.pt", "mixed_legacy.pt", "latents_stats.pt"}) {
    const auto bytes = read_bytes(kTorch / name);
    INFO(name << " (" << bytes.size() << " bytes)");
    std::size_t refused = 0;
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      try {
        const io::TensorFile f(std::span<const std::byte>(bytes.data(), n), name);
      } catch (const Error&) {
        ++refused;
      }
    }
    CHECK(refused == bytes.size());  // a strict prefix lacks the zip directory or the last storage
    // Flipped bytes: anything may be read, but only as an Error or as tensors that stay in bounds.
    Tensor<std::int64_t> draws(Shape{300, 3, 2});
    test::rng().randint(draws.view(), 0, static_cast<std::int64_t>(bytes.size()));
    for (int trial = 0; trial < 300; ++trial) {
      auto damaged = bytes;
      for (int k = 0; k < 3; ++k) {
        const std::int64_t* d = draws.data() + (trial * 3 + k) * 2;
        damaged[static_cast<std::size_t>(d[0])] = static_cast<std::byte>(d[1] % 256);
      }
      try {
        const io::TensorFile f(std::span<const std::byte>(damaged.data(), damaged.size()), name);
        for (const auto& t : f.names()) {
          CHECK(f.info(t).end <= damaged.size());
          if (is_float(f.info(t).dtype)) (void)f.load<double>(t);
        }
      } catch (const Error&) {
      }
    }
  }
}

TEST_CASE("torch.save: hand-made pickles that break the rules are refused with the reason", "[torch]") {
  const auto open = [](const std::vector<std::byte>& b) { return io::TensorFile(std::span<const std::byte>(b.data(), b.size()), "hand.pt"); };
  // A well-formed one first, so the failures below are the rule each breaks.
  const std::vector<float> vals = {1.5f, -2.f, 3.25f, 4.f, 5.f, 6.f};
  const auto good = legacy_file(tensor_dict(6, 1, {2, 2}, {1, 2}), {{"0", vals}});
  const auto f = open(good);
  const auto w = f.load<float>("w", Shape{2, 2});
  CHECK(w.data()[0] == vals[1]);  // offset 1, strides (1, 2): [[v1, v3], [v2, v4]]
  CHECK(w.data()[1] == vals[3]);
  CHECK(w.data()[2] == vals[2]);
  CHECK(w.data()[3] == vals[4]);

  REQUIRE_IREPA_ERROR(open(legacy_file(tensor_dict(6, 3, {2, 2}, {1, 2}), {{"0", vals}})), "reads element 6, past the 6");
  REQUIRE_IREPA_ERROR(open(legacy_file(tensor_dict(6, 0, {1 << 30, 1 << 30}, {1 << 30, 1 << 30}), {{"0", vals}})), "tensor 'w'");
  REQUIRE_IREPA_ERROR(open(legacy_file(tensor_dict(8, 0, {2}, {1}), {{"0", vals}})), "stored with 6 elements, the object says 8");
  auto cut = good;
  cut.resize(cut.size() - 4);
  REQUIRE_IREPA_ERROR(open(cut), "storage '0' needs 24 bytes");
  // Calls and objects outside the state-dict types.
  REQUIRE_IREPA_ERROR(open(legacy_file(Pickle{}.global("os", "system").str("true").op('\x85').op('R').done(), {})), "'os.system'");
  REQUIRE_IREPA_ERROR(open(legacy_file(Pickle{}.global("builtins", "eval").done(), {})), "'builtins.eval'");
  REQUIRE_IREPA_ERROR(open(legacy_file(Pickle{}.global("collections", "OrderedDict").str("x").op('\x85').op('R').done(), {})),
                      "OrderedDict", "with 1 arguments");
  REQUIRE_IREPA_ERROR(open(legacy_file(Pickle{}.op('}').op('I').done(), {})), "opcode 0x49");
  REQUIRE_IREPA_ERROR(open(legacy_file(Pickle{}.op('h').op('\x07').done(), {})), "memo 7");
  REQUIRE_IREPA_ERROR(open(legacy_file(Pickle{}.op(']').op('s').done(), {})), "pops an empty stack");
  // A list that holds itself, and 100 nested tuples: the walk stops at its depth limit.
  REQUIRE_IREPA_ERROR(open(legacy_file(Pickle{}.op(']').op('q').op('\x00').op('h').op('\x00').op('a').done(), {})), "deeper than 64");
  Pickle deep;
  deep.op('N');
  for (int i = 0; i < 100; ++i) deep.op('\x85');
  REQUIRE_IREPA_ERROR(open(legacy_file(deep.done(), {})), "deeper than 64");
  // None at the top, a tuple key and a tensor whose storage the file lacks.
  REQUIRE_IREPA_ERROR(open(legacy_file(Pickle{}.op('N').done(), {})), "holds a None");
  REQUIRE_IREPA_ERROR(open(legacy_file(Pickle{}.op('}').op(')').op('N').op('s').done(), {})), "a dict key that is a tuple");
  REQUIRE_IREPA_ERROR(open(legacy_file(tensor_dict(6, 0, {6}, {1}), {})), "its storage '0' is not in the file");
}
