// The reference's SiT checkpoint (tests/data/torch/sit_reference.pt, scripts/make_torch_fixtures.py)
// read as it is into a model: sampling from its EMA bit for bit as its safetensors copy, and a
// resume that restores the model, the EMA and AdamW's moments. (The torch.save reader's own
// cases are in test_torch_file.cpp.)

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "irepa/io/json.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/train/checkpoint.hpp"
#include "model_test_support.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

const fs::path kTorch = fs::path(IREPA_TEST_DATA_DIR) / "torch";

SiTConfig tiny_sit() {  // the fixture's model (scripts/make_torch_fixtures.py, TinySiT)
  SiTConfig c;
  c.input_size = 8, c.in_channels = 4, c.num_classes = 10, c.encoder_depth = 1, c.z_dims = {8}, c.projector_dim = 32;
  c.depth = 2, c.hidden_size = 16, c.num_heads = 2, c.patch_size = 2;
  return c;
}
using TinyModel = SiT<Dynamic, DynamicPatch, REPAHead, float>;

}  // namespace

TEST_CASE("torch.save: the reference's SiT checkpoint samples bit for bit as its safetensors copy", "[torch]") {
  const io::TensorFile pt((kTorch / "sit_reference.pt").string());
  const io::TensorFile st((kTorch / "sit_reference_ema.safetensors").string());
  CHECK(pt.metadata("steps") == std::optional<std::string>("3"));
  const auto args = io::parse_json(*pt.metadata("args"), "args");
  CHECK(args["model"] == "SiT-B/2");
  CHECK(args["proj_coeff"] == 0.5);
  // Every tensor of model and ema, and the moments under their names, equal bit for bit.
  for (const auto& n : st.names()) {
    if (n.starts_with("optim.")) continue;
    INFO(n);
    const auto a = pt.load<float>(n), b = st.load<float>(n);
    REQUIRE(a.shape() == b.shape());
    CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0);
  }
  TinyModel from_pt(tiny_sit()), from_st(tiny_sit());
  test::randomize(from_pt), test::randomize(from_st);
  // As irepa-generate reads --ckpt: the EMA's parameters; pos_embed, the fixed table the reference
  // keeps in its state dicts, is the model's own.
  io::LoadParamsOptions lo;
  lo.read_by_caller = {"pos_embed"};
  io::load_params(pt, from_pt.params(), "ema.", lo);
  io::load_params(st, from_st.params(), "ema.", lo);
  CHECK(std::memcmp(from_pt.params().values().data(), from_st.params().values().data(),
                    sizeof(float) * static_cast<std::size_t>(from_st.params().numel())) == 0);
  const auto data = test::random_batch(from_pt, 3);
  const auto a = from_pt.infer(CpuContext{}, data.x, data.t, data.y), b = from_st.infer(CpuContext{}, data.x, data.t, data.y);
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0);
  bool nonzero = false;
  for (std::int64_t i = 0; i < a.numel(); ++i) nonzero = nonzero || a.data()[i] != 0.0f;
  CHECK(nonzero);
}

TEST_CASE("torch.save: resuming from the reference's checkpoint restores the model, the EMA and AdamW's moments", "[torch]") {
  const std::string path = (kTorch / "sit_reference.pt").string();
  const io::TensorFile st((kTorch / "sit_reference_ema.safetensors").string());
  TinyModel m(tiny_sit());
  test::randomize(m);
  AdamW<float> opt(m.params(), AdamWOptions{});
  Ema<float> ema(m.params(), 0.9999);
  std::vector<Ema<float>*> emas = {&ema};
  Philox rng(7);
  const CheckpointInfo info = load_checkpoint(path, m, opt, emas, rng);
  CHECK(info.reference);
  CHECK(info.step == 3);
  CHECK(opt.steps() == 3);
  CHECK(info.config["exp_name"] == "tiny");
  std::int64_t with_state = 0, zero_moments = 0;
  for (const auto& e : m.params().entries()) {
    INFO(e.name);
    const auto want = st.load<float>("model." + e.name);
    CHECK(std::memcmp(m.params().values().data() + e.offset, want.data(), sizeof(float) * static_cast<std::size_t>(want.numel())) == 0);
    const auto we = st.load<float>("ema." + e.name);
    CHECK(std::memcmp(ema.values().data() + e.offset, we.data(), sizeof(float) * static_cast<std::size_t>(we.numel())) == 0);
    if (st.contains("optim.exp_avg." + e.name)) {
      ++with_state;
      const auto m1 = st.load<float>("optim.exp_avg." + e.name), v1 = st.load<float>("optim.exp_avg_sq." + e.name);
      CHECK(std::memcmp(opt.exp_avg().data() + e.offset, m1.data(), sizeof(float) * static_cast<std::size_t>(m1.numel())) == 0);
      CHECK(std::memcmp(opt.exp_avg_sq().data() + e.offset, v1.data(), sizeof(float) * static_cast<std::size_t>(v1.numel())) == 0);
    } else {
      ++zero_moments;
    }
  }
  CHECK(with_state == static_cast<std::int64_t>(m.params().entries().size()));
  CHECK(zero_moments == 0);
  // A run with two EMAs, or a model of another shape, is refused before anything changes.
  Ema<float> second(m.params(), 0.999);
  std::vector<Ema<float>*> two = {&ema, &second};
  REQUIRE_IREPA_ERROR(load_checkpoint(path, m, opt, two, rng), "one EMA, the run has 2");
  auto other_cfg = tiny_sit();
  other_cfg.projector_dim = 24;
  TinyModel other(other_cfg);
  test::randomize(other);
  AdamW<float> other_opt(other.params(), AdamWOptions{});
  Ema<float> other_ema(other.params(), 0.9999);
  std::vector<Ema<float>*> oe = {&other_ema};
  const Tensor<float> before = Tensor<float>::copy_of(other.params().values());
  REQUIRE_IREPA_ERROR(load_checkpoint(path, other, other_opt, oe, rng), "'ema.projectors.0.projection_layer.0.weight' has shape [32, 16]");
  CHECK(test::rel_error(other.params().values(), before) == 0.0);
}
