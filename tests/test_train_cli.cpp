// irepa-train end to end on synthetic shards: a run resumed from its step-10 checkpoint ends
// bit-identical to the run that went straight through; the YAML file sets flags, the command line
// overrides it; unknown keys and bad values are refused.

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <sys/wait.h>

#include "irepa/data/fashion_mnist.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/hog.hpp"
#include "test_support.hpp"
#include "tool_test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {
std::string tool() { return IREPA_TRAIN_TOOL; }

int run(const std::string& args, const fs::path& log) { return test::run_tool(tool(), args, log); }
using test::slurp;
}  // namespace

TEST_CASE("irepa-train: resume is bit-identical through the command line, with YAML and flags", "[train][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_train_cli_" + std::to_string(test::rng().seed()));
  test::write_tiny_shards(dir / "shards");  // 2 shards of 12 images [1, 8, 8], labels, HOG-like targets [16, 12]
  {
    std::ofstream y(dir / "irepa.yaml");
    y << "# iREPA\nprojection_layer_type: conv\nproj_coeff: 1.0\nspnorm-method: zscore\nmax_train_steps: 3\n";
  }
  const std::string common = "--data-dir " + (dir / "shards").string() + " --output-dir " + (dir / "out").string() +
                             " --config " + (dir / "irepa.yaml").string() +
                             " --model custom --depth 2 --hidden-size 32 --num-heads 2 --patch-size 2 --num-classes 10"
                             " --encoder-depth 1 --batch-size 5 --checkpointing-steps 10 --log-every 5 --threads 2"
                             " --learning-rate 1e-3 --ema-decay 0.9 --seed 3";
  const std::string sampling = " --sampling-steps 10 --samples-per-class 3 --sample-steps 4";
  REQUIRE(run(common + sampling + " --exp-name straight --max-train-steps 20", dir / "a.log") == 0);
  fs::create_directories(dir / "out" / "resumed" / "checkpoints");
  fs::copy_file(dir / "out" / "straight" / "checkpoints" / "0000010.safetensors",
                dir / "out" / "resumed" / "checkpoints" / "0000010.safetensors");
  REQUIRE(run(common + sampling + " --exp-name resumed --max-train-steps 20 --resume-step 10", dir / "b.log") == 0);
  INFO(slurp(dir / "b.log"));
  CHECK(slurp(dir / "b.log").find("resumed from") != std::string::npos);

  io::SafeTensorsFile a((dir / "out" / "straight" / "checkpoints" / "0000020.safetensors").string());
  io::SafeTensorsFile b((dir / "out" / "resumed" / "checkpoints" / "0000020.safetensors").string());
  REQUIRE(a.names() == b.names());
  std::size_t tensors = 0;
  for (const auto& n : a.names()) {
    INFO(n);
    const auto x = a.bytes(n), y = b.bytes(n);
    REQUIRE(x.size() == y.size());
    CHECK(std::memcmp(x.data(), y.data(), x.size()) == 0);
    tensors += n.rfind("optim.exp_avg_sq.", 0) == 0;
  }
  CHECK(tensors > 20);  // model, EMA and both moments of every parameter were compared
  CHECK(a.metadata("rng") == b.metadata("rng"));
  // A checkpoint loaded by another process gives identical samples (the EMA model's sample grid).
  const std::string grid_a = slurp(dir / "out" / "straight" / "samples" / "0000020.png");
  CHECK(grid_a.size() > 100);
  CHECK(grid_a == slurp(dir / "out" / "resumed" / "samples" / "0000020.png"));
  CHECK(grid_a != slurp(dir / "out" / "straight" / "samples" / "0000010.png"));
  CHECK(a.metadata("step") == std::optional<std::string>("20"));
  // The log has one line per step; the model moved.
  std::ifstream log(dir / "out" / "straight" / "log.jsonl");
  std::int64_t lines = 0;
  for (std::string l; std::getline(log, l);) ++lines;
  CHECK(lines == 20);
  const std::string args = slurp(dir / "out" / "straight" / "args.json");
  CHECK(args.find("\"projection-layer-type\": \"conv\"") != std::string::npos);  // from the YAML file
  CHECK(args.find("\"max-train-steps\": \"20\"") != std::string::npos);       // the command line won

  // The YAML file set max_train_steps 3 (no flag given): the run stops at 3.
  REQUIRE(run(common + " --exp-name from_yaml", dir / "c.log") == 0);
  CHECK(fs::exists(dir / "out" / "from_yaml" / "checkpoints" / "0000003.safetensors"));
  CHECK_FALSE(fs::exists(dir / "out" / "from_yaml" / "checkpoints" / "0000004.safetensors"));

  // Unknown keys and bad values are errors that name them.
  {
    std::ofstream y(dir / "bad.yaml");
    y << "projection_layer_type: conv\nlearning_rat: 0.1\n";
  }
  CHECK(run("--config " + (dir / "bad.yaml").string() + " --data-dir " + (dir / "shards").string(), dir / "d.log") != 0);
  CHECK(slurp(dir / "d.log").find("'learning_rat', which is not a flag") != std::string::npos);
  {
    std::ofstream y(dir / "bad2.yaml");
    y << "batch_size: many\n";
  }
  CHECK(run("--config " + (dir / "bad2.yaml").string() + " --data-dir " + (dir / "shards").string(), dir / "e.log") != 0);
  CHECK(slurp(dir / "e.log").find("'batch-size' has the value 'many'") != std::string::npos);
  CHECK(run(common + " --exp-name x --projection-layer-type attention", dir / "f.log") != 0);
  CHECK(slurp(dir / "f.log").find("'attention' is not known") != std::string::npos);
  CHECK(run(common + " --exp-name x --device tpu", dir / "g.log") != 0);
  CHECK(slurp(dir / "g.log").find("--device 'tpu' is not known; expected cpu, cuda or cuda:N") != std::string::npos);
  CHECK(run(common + " --exp-name x --matmul-precision fp16", dir / "g2.log") != 0);
  CHECK(slurp(dir / "g2.log").find("matmul precision 'fp16' is not known; expected fp32, tf32 or bf16") != std::string::npos);
  CHECK(run(common + " --exp-name x --matmul-precision bf16", dir / "g3.log") != 0);  // on the CPU
  CHECK(slurp(dir / "g3.log").find("--matmul-precision bf16 runs on a GPU only") != std::string::npos);
  CHECK(run(common + " --exp-name x --attention flash", dir / "g4.log") != 0);
  CHECK(slurp(dir / "g4.log").find("--attention 'flash' is not known; expected materialized or fused") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "out" / "x"));

  // --device cuda: trains on a GPU when there is one; otherwise a clear error (no GPU, or a
  // build without CUDA), and no run folder.
  const int gpu = run(common + " --exp-name gpu --device cuda --max-train-steps 2", dir / "h.log");
  INFO(slurp(dir / "h.log"));
  if (gpu == 0) {
    CHECK(fs::exists(dir / "out" / "gpu" / "checkpoints" / "0000002.safetensors"));
  } else {
    const std::string h = slurp(dir / "h.log");
    // A build without CUDA says so; a CUDA error names its cudaError code.
    CHECK((h.find("needs a build with CUDA") != std::string::npos || h.find("cudaError") != std::string::npos));
    CHECK_FALSE(fs::exists(dir / "out" / "gpu" / "checkpoints"));
  }
  fs::remove_all(dir);
}

TEST_CASE("irepa-train: a small iREPA SiT with the online HOG target learns Fashion-MNIST in 200 steps", "[train][tool][fashion]") {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) {
    WARN("dataset-fashion-mnist is not installed (scripts/setup.sh installs it); SKIPPING");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("irepa_train_fm_" + std::to_string(test::rng().seed()));
  REQUIRE(run("--dataset fashion-mnist --model custom --depth 2 --hidden-size 64 --num-heads 4 --patch-size 4 --num-classes 10"
              " --batch-size 32 --max-train-steps 200 --log-every 50 --learning-rate 1e-3 --checkpointing-steps 1000"
              " --enc-type hog-x-g7_d32 --encoder-depth 1 --projection-layer-type conv --spnorm-method zscore"
              " --threads 2 --seed " + std::to_string(test::rng().seed() % 1000) + " --output-dir " + (dir / "out").string() +
                  " --exp-name fm",
              dir.string() + ".log") == 0);
  const auto loss = test::jsonl_values(dir / "out" / "fm" / "log.jsonl", "denoising_loss");
  const auto proj = test::jsonl_values(dir / "out" / "fm" / "log.jsonl", "proj_loss");
  REQUIRE(loss.size() == 200);
  auto mean = [](const std::vector<double>& v, std::size_t a) { return test::window_mean(v, a, 20); };
  INFO("mean denoising loss, steps 1-20: " << mean(loss, 0) << ", steps 181-200: " << mean(loss, 180));
  CHECK(mean(loss, 180) < 0.75 * mean(loss, 0));
  // The alignment loss (negative cosine to the HOG tokens, in [-1, 1]) falls too.
  INFO("mean alignment loss, steps 1-20: " << mean(proj, 0) << ", steps 181-200: " << mean(proj, 180));
  CHECK(mean(proj, 0) > -0.5);
  CHECK(mean(proj, 180) < mean(proj, 0) - 0.1);
  fs::remove_all(dir);
  fs::remove(dir.string() + ".log");
}

TEST_CASE("irepa-extract-features writes HOG targets into shards that irepa-train trains on", "[train][tool][fashion]") {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) {
    WARN("dataset-fashion-mnist is not installed (scripts/setup.sh installs it); SKIPPING");
    return;
  }
  const fs::path dir = fs::temp_directory_path() / ("irepa_extract_" + std::to_string(test::rng().seed()));
  const std::string extract = std::string(IREPA_EXTRACT_TOOL) + " --dataset fashion-mnist --split test --enc-type hog-x-g7_d32"
                              " --limit 250 --shard-size 100 --batch-size 64 --threads 2 --output-dir " + (dir / "shards").string();
  REQUIRE(std::system((extract + " > " + (dir.string() + "_x.log") + " 2>&1").c_str()) == 0);
  INFO(slurp(dir.string() + "_x.log"));
  // 3 shards (100, 100, 50); features equal the encoder run directly on the same images.
  const data::ShardedDataset ds((dir / "shards").string());
  REQUIRE(ds.size() == 250);
  REQUIRE(ds.encoders() == std::vector<std::string>{"hog-x-g7_d32"});
  const auto test_set = data::FashionMnist::load(data::kFashionMnistDir, "test");
  const std::vector<std::int64_t> idx = {0, 99, 100, 249};
  const auto b = ds.get<float>(idx);
  const HogEncoder hog("hog-x-g7_d32", 28);
  const auto direct = hog.encode(CpuContext(2), b.x);
  CHECK(test::rel_error(b.features.at("hog-x-g7_d32"), direct) == 0.0);
  for (std::size_t i = 0; i < idx.size(); ++i) {
    CHECK(b.y[static_cast<std::int64_t>(i)] == test_set.labels[idx[i]]);
    CHECK(b.x[static_cast<std::int64_t>(i) * 784 + 400] == test_set.images[idx[i] * 784 + 400]);
  }
  REQUIRE(run("--data-dir " + (dir / "shards").string() + " --output-dir " + (dir / "out").string() +
                  " --exp-name s --model custom --depth 2 --hidden-size 32 --num-heads 2 --patch-size 4 --num-classes 10"
                  " --encoder-depth 1 --projection-layer-type conv --spnorm-method zscore --batch-size 16 --max-train-steps 5"
                  " --log-every 5 --threads 2",
              dir.string() + "_t.log") == 0);
  INFO(slurp(dir.string() + "_t.log"));
  CHECK(slurp(dir.string() + "_t.log").find("1 target encoder(s)") != std::string::npos);
  CHECK(fs::exists(dir / "out" / "s" / "checkpoints" / "0000005.safetensors"));
  // An encoder the build does not have is refused by name.
  CHECK(std::system((std::string(IREPA_EXTRACT_TOOL) + " --enc-type radio-vit-h --output-dir " + (dir / "x").string() + " > " +
                     dir.string() + "_y.log 2>&1").c_str()) != 0);
  CHECK(slurp(dir.string() + "_y.log").find("'radio-vit-h' is not available") != std::string::npos);
  fs::remove_all(dir);
  for (const char* s : {"_x.log", "_t.log", "_y.log"}) fs::remove(dir.string() + s);
}

TEST_CASE("irepa-train: the reference's YAML files and flags as they are, and its checkpoint resumed", "[train][tool][reference]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_train_reference_" + std::to_string(test::rng().seed()));
  test::write_tiny_shards(dir / "shards");
  // ldm/configs/irepa.yaml and repa.yaml of the reference, key for key.
  {
    std::ofstream y(dir / "irepa.yaml");
    y << "# iREPA configuration (improved)\n\nprojection_layer_type: conv\nproj_coeff: \"1.0\"\nspnorm_method: zscore\nrepa_loss: true\n";
    std::ofstream r(dir / "repa.yaml");
    r << "# REPA configuration (original)\n\nprojection_layer_type: mlp\nproj_coeff: \"0.5\"\nspnorm_method: none\nrepa_loss: true\n";
  }
  const std::string common = "--data-dir " + (dir / "shards").string() + " --output-dir " + (dir / "out").string() +
                             " --model custom --depth 2 --hidden-size 32 --num-heads 2 --patch-size 2 --num-classes 10"
                             " --encoder-depth 1 --batch-size 5 --log-every 5 --threads 2 --projector-dim 16";
  for (const char* cfg : {"irepa", "repa"}) {
    INFO(cfg);
    REQUIRE(run(common + " --config " + (dir / (std::string(cfg) + ".yaml")).string() + " --exp-name " + cfg + " --max-train-steps 2",
                dir / (std::string(cfg) + ".log")) == 0);
    const std::string args = slurp(dir / "out" / cfg / "args.json");
    CHECK(args.find(std::string("\"projection-layer-type\": \"") + (cfg == std::string("irepa") ? "conv" : "mlp")) != std::string::npos);
    CHECK(args.find(std::string("\"proj-coeff\": \"") + (cfg == std::string("irepa") ? "1.0" : "0.5")) != std::string::npos);
    CHECK(args.find("\"repa-loss\": \"true\"") != std::string::npos);
  }
  // The reference's other flags: accepted; --epochs 1 stops after one pass (24 images / 5: 4 steps).
  const std::string ref_flags = " --epochs 1 --cls-token-weight 0.3 --zscore-proj-skip-std --proj-coeff 0.25,0.5"
                                " --projection-loss-type cosine,cosine --report-to none --mixed-precision bf16 --allow-tf32 --fused-attn"
                                " --compile --num-workers 4 --logging-dir logs --n-samples 16 --prediction v --gradient-accumulation-steps 1";
  REQUIRE(run(common + ref_flags + " --exp-name flags --max-train-steps 10", dir / "flags.log") == 0);
  CHECK(fs::exists(dir / "out" / "flags" / "checkpoints" / "0000004.safetensors"));
  CHECK_FALSE(fs::exists(dir / "out" / "flags" / "checkpoints" / "0000005.safetensors"));
  // Refused, with the reason.
  const std::vector<std::pair<std::string, std::string>> refused = {
      {" --qk-norm", "--qk-norm is not supported"},
      {" --gradient-accumulation-steps 2", "--gradient-accumulation-steps 2 is not implemented"},
      {" --prediction eps", "--prediction 'eps' is not supported"},
      {" --proj-coeff 0.5,0.5", "has 2 coefficients and --projection-loss-type 'cosine' 1 loss types"},
      {" --projection-loss-type mse", "'mse' is not implemented"},
      {" --mixed-precision fp8", "'fp8' is not one of the reference's"},
      {" --no-repa-loss", "--no-repa-loss, but the data carries target features (hog)"},
  };
  int k = 0;
  for (const auto& [flag, want] : refused) {
    const fs::path log = dir / ("r" + std::to_string(k++) + ".log");
    CHECK(WEXITSTATUS(run(common + " --exp-name refused" + flag, log)) == 1);  // refused: status 1, not a crash
    INFO(flag << ": " << slurp(log));
    CHECK(slurp(log).find(want) != std::string::npos);
  }
  CHECK_FALSE(fs::exists(dir / "out" / "refused" / "checkpoints" / "0000001.safetensors"));

  // A checkpoint of the reference's train.py (tests/data/torch/sit_reference.pt, 3 steps) continues here:
  // its tiny SiT on 4-channel 8x8 latents with one 8-wide target.
  fs::create_directories(dir / "latents");
  for (int s = 0; s < 2; ++s) {
    Tensor<std::int64_t> labels(Shape{6});
    test::rng().randint(labels.view(), 0, 10);
    io::SafeTensorsWriter w;
    w.add("latents", test::randn<float>({6, 4, 8, 8}));
    w.add("labels", labels);
    w.add("features.t", test::randn<float>({6, 16, 8}));
    w.write((dir / "latents" / ("part" + std::to_string(s) + ".safetensors")).string());
  }
  fs::create_directories(dir / "out" / "ref" / "checkpoints");
  fs::copy_file(fs::path(IREPA_TEST_DATA_DIR) / "torch" / "sit_reference.pt", dir / "out" / "ref" / "checkpoints" / "0000003.pt");
  const std::string tiny = "--data-dir " + (dir / "latents").string() + " --output-dir " + (dir / "out").string() +
                           " --model custom --depth 2 --hidden-size 16 --num-heads 2 --patch-size 2 --num-classes 10 --encoder-depth 1"
                           " --projector-dim 32 --batch-size 4 --log-every 1 --threads 2 --exp-name ref";
  REQUIRE(run(tiny + " --resume-step 3 --max-train-steps 5", dir / "ref.log") == 0);
  INFO(slurp(dir / "ref.log"));
  CHECK(slurp(dir / "ref.log").find("0000003.pt at step 3 (the reference's checkpoint") != std::string::npos);
  const io::TensorFile end((dir / "out" / "ref" / "checkpoints" / "0000005.safetensors").string());
  CHECK(end.metadata("step") == std::optional<std::string>("5"));
  CHECK(end.metadata("optimizer_steps") == std::optional<std::string>("5"));  // the reference's 3 AdamW steps, then 2 more
  fs::remove_all(dir);
}
