// Bad input and faults, each class from the reliability issue built as a reproducer: sizes that
// wrap, deep or duplicated JSON, FIFOs, decompression bombs, corrupt checkpoint metadata, a run
// into a used folder, two trainers in one folder, non-finite settings and updates, empty grids,
// absurd thread counts. Every case expects an irepa::Error naming what was wrong, and nothing
// written or changed.

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
#include "irepa/data/idx.hpp"
#include "irepa/data/fashion_mnist.hpp"
#include "irepa/diffusion/sit_objective.hpp"
#include "irepa/io/image_grid.hpp"
#include "irepa/io/json.hpp"
#include "irepa/io/npy.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/models/sit.hpp"
#include "irepa/train/checkpoint.hpp"
#include "irepa/train/trainer.hpp"
#include "test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

/// A fresh draw in [lo, hi).
std::int64_t draw(std::int64_t lo, std::int64_t hi) {
  Tensor<std::int64_t> t(Shape{1});
  test::rng().randint(t.view(), lo, hi);
  return t[0];
}

bool same_bits(TensorView<float> a, TensorView<float> b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * sizeof(float)) == 0;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("irepa_rel_" + name + "_" + std::to_string(test::rng().seed()) + "_" +
                                                  std::to_string(draw(0, 100000)));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

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
  const fs::path d = temp_dir("fifo");
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
  const fs::path d = temp_dir("bomb");
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

namespace {
using Model = SiT<Dynamic, DynamicPatch, iREPAHead<Conv3x3, SpatialNorm>, float>;

SiTConfig tiny() {
  SiTConfig c;
  c.input_size = 8, c.in_channels = 1, c.num_classes = 10, c.encoder_depth = 1, c.z_dims = {};
  c.depth = 2, c.hidden_size = 16, c.num_heads = 2, c.patch_size = 2;
  return c;
}

data::ImageDataset tiny_images() {
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
  return train(ctx, o, m, SiTObjective{}, tiny_images(), {}, cfg);
}
}  // namespace

TEST_CASE("checkpoint metadata: a negative step, bad types and ranges are errors naming the field", "[reliability]") {
  const fs::path d = temp_dir("meta");
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
  const fs::path d = temp_dir("folder");
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
  const fs::path d = temp_dir("resume");
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
  const fs::path d = temp_dir("numbers");
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
    REQUIRE_IREPA_ERROR(train(ctx, tiny_options(d / "p"), m, SiTObjective{.proj_coeff = std::nan("")}, tiny_images(), {}, nlohmann::json::object()),
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
  const fs::path d = temp_dir("skip");
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
