// irepa-train end to end on synthetic shards: a run resumed from its step-10 checkpoint ends
// bit-identical to the run that went straight through; the YAML file sets flags, the command line
// overrides it; unknown keys and bad values are refused.

#include <bit>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <sys/wait.h>

#include "irepa/data/fashion_mnist.hpp"
#include "irepa/io/png.hpp"
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

namespace {
/// The records of a TFRecord file, split and CRC-checked here (bit-by-bit CRC-32C, masked as
/// TensorFlow masks it), independently of the library's reader.
std::vector<std::string> tfrecords(const std::string& bytes) {
  auto crc = [](std::string_view s) {
    std::uint32_t c = 0xFFFFFFFFu;
    for (const char ch : s) {
      c ^= static_cast<std::uint8_t>(ch);
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    c = ~c;
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
  };
  auto le = [&](std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t{static_cast<std::uint8_t>(bytes.at(at + static_cast<std::size_t>(i)))} << (8 * i);
    return v;
  };
  std::vector<std::string> out;
  for (std::size_t at = 0; at < bytes.size();) {
    const std::uint64_t n = le(at, 8);
    REQUIRE(le(at + 8, 4) == crc(std::string_view(bytes).substr(at, 8)));
    REQUIRE(at + 16 + n <= bytes.size());
    const std::string data = bytes.substr(at + 12, n);
    REQUIRE(le(at + 12 + n, 4) == crc(data));
    out.push_back(data);
    at += 16 + n;
  }
  return out;
}

/// One Event as `protoc --decode_raw` prints it, flattened: each field's value under its
/// path of field numbers ("2", "5.1.1", ...); a repeated Summary.Value starts a new group.
struct RawEvent {
  std::map<std::string, std::string> top;                 // "1" wall_time, "2" step, "3" file_version
  std::vector<std::map<std::string, std::string>> values;  // each Summary.Value: "1" tag, "2" float bits, "4.1" height ...
};
RawEvent decode_raw(const std::string& record, const fs::path& work) {
  { std::ofstream(work / "record.bin", std::ios::binary) << record; }
  const std::string cmd = std::string(IREPA_PROTOC) + " --decode_raw < " + (work / "record.bin").string() + " > " + (work / "record.txt").string();
  REQUIRE(WEXITSTATUS(std::system(cmd.c_str())) == 0);
  RawEvent e;
  std::vector<std::string> path;
  std::istringstream in(slurp(work / "record.txt"));
  for (std::string line; std::getline(in, line);) {
    const auto b = line.find_first_not_of(' ');
    if (b == std::string::npos) continue;
    line = line.substr(b);
    if (line == "}") {
      path.pop_back();
      continue;
    }
    if (line.ends_with(" {")) {
      path.push_back(line.substr(0, line.size() - 2));
      if (path.size() == 2 && path[0] == "5" && path[1] == "1") e.values.emplace_back();
      continue;
    }
    const auto colon = line.find(": ");
    REQUIRE(colon != std::string::npos);
    std::string key = line.substr(0, colon);
    for (std::size_t i = path.size(); i-- > 0;) key = path[i] + "." + key;
    if (key.starts_with("5.1.")) {
      REQUIRE(!e.values.empty());
      e.values.back()[key.substr(4)] = line.substr(colon + 2);
    } else {
      e.top[key] = line.substr(colon + 2);
    }
  }
  return e;
}

/// A fixed32 as decode_raw prints it (0x3f800000) -> the float with those bits.
float raw_float(const std::string& hex) { return std::bit_cast<float>(static_cast<std::uint32_t>(std::stoul(hex, nullptr, 16))); }

std::vector<fs::path> event_files(const fs::path& run) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().filename().string().starts_with("events.out.tfevents.")) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

TEST_CASE("irepa-train: TensorBoard event files decode record by record with protoc and hold log.jsonl's scalars", "[train][tool][tensorboard]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_train_tb_" + std::to_string(test::rng().seed()));
  fs::remove_all(dir);
  test::write_tiny_shards(dir / "shards");
  const std::string common = "--data-dir " + (dir / "shards").string() + " --output-dir " + (dir / "out").string() +
                             " --model custom --depth 2 --hidden-size 32 --num-heads 2 --patch-size 2 --num-classes 10"
                             " --encoder-depth 1 --batch-size 5 --checkpointing-steps 4 --log-every 2 --threads 2"
                             " --learning-rate 1e-3 --ema-decay 0.9 --sampling-steps 3 --samples-per-class 2 --sample-steps 2"
                             " --exp-name tb --seed " + std::to_string(test::rng().seed() % 1000);
  REQUIRE(run(common + " --max-train-steps 6", dir / "a.log") == 0);
  const fs::path runp = dir / "out" / "tb";
  auto files = event_files(runp);
  REQUIRE(files.size() == 1);
  const std::string first_bytes = slurp(files[0]);

  // Every record decodes; the scalars are log.jsonl's, as float, step by step.
  std::map<std::int64_t, std::map<std::string, float>> tb_scalars;
  std::vector<std::pair<std::int64_t, std::map<std::string, std::string>>> images;
  std::size_t texts = 0;
  const auto records = tfrecords(first_bytes);
  REQUIRE(records.size() >= 6);
  for (std::size_t r = 0; r < records.size(); ++r) {
    INFO("record " << r);
    const RawEvent e = decode_raw(records[r], dir);
    REQUIRE(e.top.contains("1"));  // wall_time
    if (r == 0) {
      CHECK(e.top.at("3") == "\"brain.Event:2\"");
      continue;
    }
    const std::int64_t step = e.top.contains("2") ? std::stoll(e.top.at("2")) : 0;  // proto3 leaves a 0 out
    for (const auto& v : e.values) {
      if (v.contains("2")) {
        tb_scalars[step][v.at("1")] = raw_float(v.at("2"));
      } else if (v.contains("4.1")) {
        images.emplace_back(step, v);
      } else {
        CHECK(v.at("1") == "\"args\"");
        CHECK(v.at("9.1.1") == "\"text\"");  // the text plugin
        CHECK(v.at("8.1") == "7");           // DT_STRING
        ++texts;
      }
    }
  }
  CHECK(texts == 1);
  std::ifstream log(runp / "log.jsonl");
  std::size_t lines = 0, compared = 0;
  for (std::string l; std::getline(log, l); ++lines) {
    const auto j = nlohmann::json::parse(l);
    const std::int64_t step = j.at("step").get<std::int64_t>();
    INFO("step " << step);
    REQUIRE(tb_scalars.contains(step));
    CHECK(tb_scalars.at(step).size() == j.size() - 1);
    for (const auto& [k, v] : j.items()) {
      if (k == "step") continue;
      INFO(k);
      REQUIRE(tb_scalars.at(step).contains("\"" + k + "\""));
      CHECK(tb_scalars.at(step).at("\"" + k + "\"") == static_cast<float>(v.get<double>()));
      ++compared;
    }
  }
  CHECK(lines == 6);
  CHECK(tb_scalars.size() == 6);
  CHECK(compared >= 6 * 5);  // loss, denoising_loss, proj_loss, grad_norm, lr
  for (const std::int64_t s : {1, 6}) CHECK(tb_scalars.at(s).contains("\"denoising_loss\""));
  // The sample grids of steps 3 and 6, with the PNG files' sizes.
  REQUIRE(images.size() == 2);
  for (const auto& [step, v] : images) {
    INFO("grid of step " << step);
    CHECK(v.at("1") == "\"samples\"");
    const auto png = io::read_png((runp / "samples" / fmt::format("{:07}.png", step)).string());
    CHECK(std::stoll(v.at("4.1")) == png.pixels.size(0));
    CHECK(std::stoll(v.at("4.2")) == png.pixels.size(1));
    CHECK(v.at("4.3") == "1");  // grey
  }
  CHECK(images[0].first == 3);
  CHECK(images[1].first == 6);

  // A resumed run adds a second file and leaves the first as it was; --report-to none adds none.
  REQUIRE(run(common + " --max-train-steps 8 --resume-step 4", dir / "b.log") == 0);
  files = event_files(runp);
  REQUIRE(files.size() == 2);
  CHECK(slurp(files[0]) == first_bytes);
  const auto resumed = tfrecords(slurp(files[1]));
  CHECK(resumed.size() >= 6);  // version, args, steps 5-8
  CHECK(decode_raw(resumed.back(), dir).top.at("2") == "8");
  REQUIRE(run(common + " --max-train-steps 9 --resume-step 8 --report-to none", dir / "c.log") == 0);
  CHECK(event_files(runp).size() == 2);
  CHECK(run(common + " --max-train-steps 10 --resume-step 8 --report-to comet", dir / "d.log") != 0);
  CHECK(slurp(dir / "d.log").find("--report-to is 'comet', expected tensorboard") != std::string::npos);
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
