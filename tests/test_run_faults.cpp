// The trainer's faults, each class from the reliability issue built as a reproducer: corrupt
// checkpoint metadata, a fresh run into a used folder, two trainers in one folder, a resume with
// other settings, non-finite settings and updates, non-finite batches. Every case expects an
// irepa::Error naming what was wrong, and nothing written or changed. (The readers' cases are in
// test_reliability.cpp.)

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "irepa/data/fashion_mnist.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/train/checkpoint.hpp"
#include "irepa/train/trainer.hpp"
#include "fault_test_support.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

using test::draw;
using test::write_bytes;

using test::same_bits;

using Model = SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float>;

SiTConfig tiny() {
  SiTConfig c;
  c.input_size = 8, c.in_channels = 1, c.num_classes = 10, c.encoder_depth = 1, c.z_dims = {};
  c.depth = 2, c.hidden_size = 16, c.num_heads = 2, c.patch_size = 2;
  return c;
}

data::ImageDataset fault_images() {
  Tensor<std::uint8_t> img(Shape{24, 1, 8, 8});
  Tensor<std::int64_t> px(Shape{img.numel()}), labels(Shape{24});
  test::rng().randint(px.view(), 0, 256);
  test::rng().randint(labels.view(), 0, 10);
  for (std::int64_t i = 0; i < img.numel(); ++i) img[i] = static_cast<std::uint8_t>(px[i]);
  return data::ImageDataset(std::move(img), std::move(labels));
}

TrainerOptions tiny_options(const fs::path& dir) {
  TrainerOptions o;
  o.run_dir = dir.string(), o.batch_size = 4, o.max_train_steps = 4, o.checkpointing_steps = 2, o.log_every = 2, o.quiet = true;
  o.schedule.lr = 1e-3;
  return o;
}

TrainResult<float> run_tiny(const TrainerOptions& o, const nlohmann::json& cfg = nlohmann::json{{"lr", 1e-3}, {"depth", 2}}) {
  CpuContext ctx(2);
  Model m(tiny());
  m.init(5);
  return train(ctx, o, m, SiTObjective{}, fault_images(), {}, cfg);
}
}  // namespace

TEST_CASE("checkpoint metadata: a negative step, bad types and ranges are errors naming the field", "[reliability]") {
  const fs::path d = test::fault_dir("meta");
  run_tiny(tiny_options(d / "run"));
  const fs::path ck = d / "run" / "checkpoints" / "0000004.safetensors";
  REQUIRE(fs::exists(ck));
  const io::SafeTensorsFile good(ck.string());
  const CheckpointMeta m = read_checkpoint_meta(good);
  CHECK(m.step == 4);
  CHECK(m.optimizer_steps == 4);
  REQUIRE(m.emas.size() == 1);
  CHECK(m.config.at("depth") == 2);
  // Rewrites the file with one metadata entry replaced.
  auto with = [&](const std::string& key, const std::string& value) {
    io::SafeTensorsWriter w;
    for (const auto& n : good.names()) w.add(n, good.load<float>(n));
    for (const auto& [k, v] : good.metadata()) w.set_metadata(k, k == key ? value : v);
    const std::string p = (d / ("bad_" + key + ".safetensors")).string();
    w.write(p);
    return p;
  };
  auto meta_of = [](const std::string& p) { return read_checkpoint_meta(io::SafeTensorsFile(p)); };
  REQUIRE_IREPA_ERROR(meta_of(with("step", "-3")), "'step' is '-3'", "expected a count");
  REQUIRE_IREPA_ERROR(meta_of(with("step", "1e3")), "'step'");
  REQUIRE_IREPA_ERROR(meta_of(with("step", "99999999999999999999")), "'step'");
  REQUIRE_IREPA_ERROR(meta_of(with("optimizer_steps", "5")), "5 optimizer steps after 4 training steps");
  REQUIRE_IREPA_ERROR(meta_of(with("emas", R"([{"decay": 2.5, "every": 1}])")), "decay 2.5");
  REQUIRE_IREPA_ERROR(meta_of(with("emas", R"([{"decay": 0.9, "every": 0}])")), "every 0");
  REQUIRE_IREPA_ERROR(meta_of(with("emas", R"({"decay": 0.9})")), "'emas' is a JSON object");
  REQUIRE_IREPA_ERROR(meta_of(with("rng", R"({"seed": -1, "stream": 1, "position": 0})")), "'rng'", "'seed'");
  REQUIRE_IREPA_ERROR(meta_of(with("rng", R"({"seed": 1, "stream": 1})")), "'position'");
  REQUIRE_IREPA_ERROR(meta_of(with("config", "[1, 2]")), "'config' is a JSON array");
  REQUIRE_IREPA_ERROR(meta_of(with("config", std::string(5000, '[') + std::string(5000, ']'))), "nested deeper");
  REQUIRE_IREPA_ERROR(meta_of(with("config", R"({"a": 1, "a": 2})")), "key 'a' twice");
  REQUIRE_IREPA_ERROR(meta_of(with("format", "something-else")), "not an irepa checkpoint");
  // A resume from such a file changes nothing (the check comes before any load).
  CpuContext ctx(1);
  Model model(tiny());
  model.init(9);
  const Tensor<float> before = Tensor<float>::copy_of(model.params().values());
  AdamW<float> opt(model.params(), AdamWOptions{});
  Ema<float> ema(model.params(), 0.9);
  Philox rng(1);
  REQUIRE_IREPA_ERROR(load_checkpoint(with("step", "-1"), model, opt, {&ema}, rng), "'step'");
  CHECK(same_bits(model.params().values(), before.view()));
  fs::remove_all(d);
}

TEST_CASE("run folders: a fresh run refuses a used folder, a second trainer is locked out, temporaries are cleaned", "[reliability]") {
  const fs::path d = test::fault_dir("folder");
  const fs::path run = d / "run";
  const auto first = run_tiny(tiny_options(run));
  const auto ck_bytes = fs::file_size(run / "checkpoints" / "0000004.safetensors");
  const auto log_lines = [&] {
    std::ifstream f(run / "log.jsonl");
    return static_cast<int>(std::count(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>(), '\n'));
  };
  REQUIRE(log_lines() == 4);
  // A fresh run into it: refused, nothing touched.
  REQUIRE_IREPA_ERROR(run_tiny(tiny_options(run)), "already holds a run", "--resume-step", "--overwrite");
  CHECK(log_lines() == 4);
  CHECK(fs::file_size(run / "checkpoints" / "0000004.safetensors") == ck_bytes);
  // Two trainers on one folder: the second names the first.
  {
    CpuContext ctx(1);
    Model a(tiny()), b(tiny());
    TrainerOptions o = tiny_options(d / "shared");
    Trainer<Model, SiTObjective> one(ctx, o, a, SiTObjective{}, nlohmann::json::object());
    const std::string holder = "in use by process " + std::to_string(::getpid());
    REQUIRE_IREPA_ERROR((Trainer<Model, SiTObjective>(ctx, o, b, SiTObjective{}, nlohmann::json::object())), holder.c_str());
  }
  // The lock goes with its holder: the folder is free again.
  {
    CpuContext ctx(1);
    Model a(tiny());
    TrainerOptions o = tiny_options(d / "shared");
    o.overwrite = true;
    Trainer<Model, SiTObjective> again(ctx, o, a, SiTObjective{}, nlohmann::json::object());
  }
  // A killed writer's temporaries are removed at the next start; --overwrite clears the old run.
  write_bytes(run / "checkpoints" / "0000006.safetensors.tmp.12345", std::string(1000, 'x'));
  write_bytes(run / "args.json.tmp.999", "{");
  TrainerOptions o = tiny_options(run);
  o.overwrite = true;
  o.max_train_steps = 2;
  run_tiny(o);
  CHECK_FALSE(fs::exists(run / "checkpoints" / "0000006.safetensors.tmp.12345"));
  CHECK_FALSE(fs::exists(run / "args.json.tmp.999"));
  CHECK_FALSE(fs::exists(run / "checkpoints" / "0000004.safetensors"));  // the earlier run's
  CHECK(fs::exists(run / "checkpoints" / "0000002.safetensors"));
  CHECK(log_lines() == 2);
  for (const auto& e : fs::recursive_directory_iterator(run)) CHECK(e.path().string().find(".tmp") == std::string::npos);
  fs::remove_all(d);
}

TEST_CASE("resume compares the stored settings: model and objective changes are errors listing each, rates and steps may change", "[reliability]") {
  const fs::path d = test::fault_dir("resume");
  const nlohmann::json cfg = {{"depth", 2}, {"path-type", "linear"}, {"learning-rate", 1e-3}, {"max-train-steps", 4}, {"ema-decay", 0.9999}};
  run_tiny(tiny_options(d / "run"), cfg);
  TrainerOptions o = tiny_options(d / "run");
  o.resume_step = 2;
  nlohmann::json other = cfg;
  other["path-type"] = "cosine", other["ema-decay"] = 0.99, other["max-train-steps"] = 6;
  REQUIRE_IREPA_ERROR(run_tiny(o, other), "other settings", "path-type: \"linear\" in the checkpoint, \"cosine\" now", "ema-decay");
  nlohmann::json changed = cfg;
  changed["learning-rate"] = 5e-4, changed["max-train-steps"] = 6;
  o.max_train_steps = 6;
  const auto r = run_tiny(o, changed);
  CHECK(r.history.size() == 4);
  // A checkpoint whose step is not its name is refused.
  fs::copy_file(d / "run" / "checkpoints" / "0000004.safetensors", d / "run" / "checkpoints" / "0000003.safetensors");
  o.resume_step = 3;
  REQUIRE_IREPA_ERROR(run_tiny(o, changed), "holds step 4, expected 3");
  fs::remove_all(d);
}

TEST_CASE("numbers: non-finite or out-of-range settings are refused before training, a non-finite update before any save", "[reliability]") {
  const fs::path d = test::fault_dir("numbers");
  auto refused = [&](auto edit, const char* what) {
    TrainerOptions o = tiny_options(d / "r");
    edit(o);
    REQUIRE_IREPA_ERROR(run_tiny(o), what);
    CHECK_FALSE(fs::exists(d / "r" / "checkpoints" / "0000002.safetensors"));
  };
  refused([](TrainerOptions& o) { o.schedule.lr = std::nan(""); }, "learning rate is nan");
  refused([](TrainerOptions& o) { o.schedule.lr = INFINITY; }, "learning rate is inf");
  refused([](TrainerOptions& o) { o.adamw.beta1 = 1.0; }, "beta1");
  refused([](TrainerOptions& o) { o.adamw.beta2 = std::nan(""); }, "beta2");
  refused([](TrainerOptions& o) { o.adamw.eps = 0; }, "epsilon");
  refused([](TrainerOptions& o) { o.adamw.weight_decay = -1; }, "weight decay");
  refused([](TrainerOptions& o) { o.label_drop_prob = std::nan(""); }, "label-drop");
  refused([](TrainerOptions& o) { o.max_grad_norm = std::nan(""); }, "max_grad_norm");
  refused([](TrainerOptions& o) { o.ema_decays = {1.5}; }, "EMA decay");
  refused([](TrainerOptions& o) { o.samples_per_class = 0; }, "sample grids");
  refused([](TrainerOptions& o) { o.batch_size = 1000000000; }, "batch size is 1000000000, expected 1 to 65536");
  refused([](TrainerOptions& o) { o.log_every = std::int64_t{1} << 40; }, "log_every");
  {
    CpuContext ctx(1);
    Model m(tiny());
    REQUIRE_IREPA_ERROR(train(ctx, tiny_options(d / "p"), m, SiTObjective{.proj_coeff = std::nan("")}, fault_images(), {}, nlohmann::json::object()),
                        "proj_coeff");
  }
  // A finite but absurd rate: the loss and the norm of step 1 are finite, the weights after it
  // are not. The error names the parameter and the step; no checkpoint is written.
  TrainerOptions o = tiny_options(d / "huge");
  o.schedule.lr = 1e300;
  o.max_train_steps = 2, o.log_every = 1;
  REQUIRE_IREPA_ERROR(run_tiny(o), "weights are not finite after the update of step 1:", "x_embedder.proj.weight", "last checkpoint is unchanged");
  CHECK_FALSE(fs::exists(d / "huge" / "checkpoints" / "0000002.safetensors"));
  fs::remove_all(d);
}

TEST_CASE("skip-nonfinite-steps: a NaN batch is skipped (weights untouched, logged) up to N times, then the run stops", "[reliability]") {
  const fs::path d = test::fault_dir("skip");
  CpuContext ctx(1);
  Model model(tiny());
  model.init(3);
  TrainerOptions o = tiny_options(d / "run");
  o.skip_nonfinite_steps = 1, o.log_every = 1;
  Trainer<Model, SiTObjective> trainer(ctx, o, model, SiTObjective{}, nlohmann::json::object());
  Tensor<float> x(Shape{4, 1, 8, 8});
  Tensor<std::int64_t> y(Shape{4});
  test::rng().normal(x.view());
  test::rng().randint(y.view(), 0, 10);
  trainer.step(x, y.view(), {});
  trainer.flush();
  const Tensor<float> before = Tensor<float>::copy_of(model.params().values());
  Tensor<float> bad = Tensor<float>::copy_of(x.cview());
  bad[draw(0, bad.numel())] = std::nanf("");
  trainer.step(bad, y.view(), {});
  trainer.flush();
  CHECK(same_bits(model.params().values(), before.view()));  // no update, no EMA
  CHECK(trainer.optimizer().steps() == 1);
  trainer.step(x, y.view(), {});
  trainer.flush();
  CHECK(trainer.optimizer().steps() == 2);
  REQUIRE_IREPA_ERROR(trainer.step(bad, y.view(), {}), "step 4", "--skip-nonfinite-steps allows 1");
  std::ifstream log(d / "run" / "log.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(log, l);) lines.push_back(nlohmann::json::parse(l));
  REQUIRE(lines.size() == 3);
  CHECK(lines[1].at("step") == 2);
  CHECK(lines[1].at("skipped_nonfinite") == 1);
  CHECK_FALSE(lines[1].contains("grad_norm"));
  CHECK(lines[2].contains("grad_norm"));
  fs::remove_all(d);
}
