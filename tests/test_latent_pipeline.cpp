// The latent pipeline end to end through the programs: an ImageFolder of PNG and JPEG images ->
// irepa-encode with a small SD-VAE (posterior shards; resumed, refused when finished or when the
// settings differ) -> irepa-encode stats -> irepa-train on the posteriors with an online HOG
// target on the images (paired from the ImageFolder, or stored beside the posteriors) -> sample
// grids decoded by the VAE.

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "irepa/data/image_folder.hpp"
#include "irepa/data/latent_stats.hpp"
#include "irepa/data/shards.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/io/png.hpp"
#include "irepa/models/sd_vae.hpp"
#include "test_support.hpp"
#include "tool_test_support.hpp"

using namespace irepa;
namespace fs = std::filesystem;

namespace {

int encode_tool(const std::string& args, const fs::path& log) { return test::run_tool(IREPA_ENCODE_TOOL, args, log); }
int train_tool(const std::string& args, const fs::path& log) { return test::run_tool(IREPA_TRAIN_TOOL, args, log); }

SdVaeConfig small_vae() {
  SdVaeConfig c;  // four levels (f = 8) as VAE_F8D4, narrow
  c.ch = 8, c.ch_mult = {1, 2, 2, 2}, c.num_res_blocks = 1, c.groups = 4, c.attn_resolutions = {};
  return c;
}

}  // namespace

TEST_CASE("images -> irepa-encode -> stats -> irepa-train on posteriors with an online target -> decoded grids", "[latent][tool]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_latent_pipeline_" + std::to_string(test::rng().seed()));
  fs::remove_all(dir);
  const fs::path images = fs::path(IREPA_TEST_DATA_DIR) / "images";
  // Three classes of PNG and JPEG images of assorted sizes and colour types.
  const std::vector<std::vector<std::string>> classes = {{"rgb420.jpg", "rgb.png", "palette.png", "grey.jpg"},
                                                         {"cmyk.jpg", "rgba.png", "rgb444_progressive.jpg"},
                                                         {"odd_upscale.jpg", "grey.png", "grey16.png", "rgb420.jpg", "rgb.png"}};
  for (std::size_t c = 0; c < classes.size(); ++c) {
    const fs::path cd = dir / "folder" / ("n0" + std::to_string(c));
    fs::create_directories(cd);
    for (std::size_t i = 0; i < classes[c].size(); ++i)
      fs::copy_file(images / classes[c][i], cd / (std::to_string(i) + "_" + classes[c][i]));
  }
  SdVae<float> vae(small_vae());
  vae.init_random(test::rng().seed(), 0.1f);
  save_sd_vae(vae, (dir / "vae.safetensors").string());

  const std::string enc = "encode --source " + (dir / "folder").string() + " --vae " + (dir / "vae.safetensors").string() +
                          " --resolution 32 --batch-size 3 --shard-size 5 --threads 2 --dest ";
  REQUIRE(encode_tool(enc + (dir / "post").string(), dir / "enc.log") == 0);
  INFO(test::slurp(dir / "enc.log"));
  for (const char* part : {"part-00000", "part-00001", "part-00002"}) CHECK(fs::exists(dir / "post" / (std::string(part) + ".safetensors")));
  auto manifest = nlohmann::json::parse(std::ifstream(dir / "post" / "encode.json"));
  CHECK(manifest.at("finished").get<bool>());
  CHECK(manifest.at("count").get<int>() == 12);

  // The shards hold what the VAE gives for the ImageFolder's crops, with their labels.
  const data::ImageFolder folder((dir / "folder").string(), 32);
  const data::ShardedDataset post((dir / "post").string());
  REQUIRE(post.kind() == "posteriors");
  REQUIRE(post.size() == 12);
  REQUIRE(post.sample_shape() == Shape{8, 4, 4});
  CpuContext ctx(2);
  std::vector<std::int64_t> idx = {0, 4, 11};
  const auto imgs = folder.get<float>(idx);
  Tensor<float> x(imgs.x.shape());
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = imgs.x[i] / 127.5f - 1.0f;
  const auto want = vae.encode(ctx, x);
  const auto got = post.get<float>(idx);
  CHECK(test::rel_error(got.x, want) < 1e-6);
  for (std::size_t i = 0; i < idx.size(); ++i) CHECK(got.y[static_cast<std::int64_t>(i)] == folder.label(idx[i]));

  // Finished: refused. Stopped (a shard missing, not finished): continued, only that shard written.
  CHECK(encode_tool(enc + (dir / "post").string(), dir / "again.log") != 0);
  CHECK(test::slurp(dir / "again.log").find("finished encoding of 12 images") != std::string::npos);
  const auto before = test::slurp(dir / "post" / "part-00000.safetensors");
  fs::remove(dir / "post" / "part-00001.safetensors");
  manifest["finished"] = false;
  std::ofstream(dir / "post" / "encode.json") << manifest.dump(2);
  REQUIRE(encode_tool(enc + (dir / "post").string(), dir / "resume.log") == 0);
  const auto resumed = test::slurp(dir / "resume.log");
  CHECK(resumed.find("wrote " + (dir / "post" / "part-00001.safetensors").string()) != std::string::npos);
  CHECK(resumed.find("part-00000.safetensors") == std::string::npos);
  CHECK(test::slurp(dir / "post" / "part-00000.safetensors") == before);
  CHECK(nlohmann::json::parse(std::ifstream(dir / "post" / "encode.json")).at("finished").get<bool>());
  manifest["finished"] = false;
  std::ofstream(dir / "post" / "encode.json") << manifest.dump(2);
  CHECK(encode_tool("encode --source " + (dir / "folder").string() + " --vae " + (dir / "vae.safetensors").string() +
                        " --resolution 64 --dest " + (dir / "post").string(),
                    dir / "other.log") != 0);
  CHECK(test::slurp(dir / "other.log").find("resolution = 32, this run has 64") != std::string::npos);
  fs::create_directories(dir / "busy");
  std::ofstream(dir / "busy" / "mine.txt") << "x";
  CHECK(encode_tool(enc + (dir / "busy").string(), dir / "busy.log") != 0);
  CHECK(test::slurp(dir / "busy.log").find("not an irepa-encode folder") != std::string::npos);

  // The latent statistics of the posteriors.
  REQUIRE(encode_tool("stats --source " + (dir / "post").string() + " --dest " + (dir / "stats.safetensors").string(), dir / "stats.log") == 0);
  const auto st = data::LatentStats::load((dir / "stats.safetensors").string());
  CHECK(st.channels() == 4);

  // 20 SiT steps on the posteriors, the HOG target computed online from the paired images, grids decoded by the VAE.
  const std::string train = " --output-dir " + (dir / "runs").string() + " --latents-stats " + (dir / "stats.safetensors").string() +
                            " --vae " + (dir / "vae.safetensors").string() +
                            " --enc-type hog-x-g4_d32 --resolution 32 --model custom --depth 2 --hidden-size 32 --num-heads 2"
                            " --patch-size 1 --num-classes 3 --encoder-depth 1 --projection-layer-type conv --spnorm-method zscore"
                            " --batch-size 4 --max-train-steps 20 --checkpointing-steps 20 --log-every 10 --sampling-steps 20"
                            " --samples-per-class 4 --sample-steps 8 --learning-rate 1e-3 --threads 2 --seed 1";
  REQUIRE(train_tool("--data-dir " + (dir / "post").string() + " --image-dir " + (dir / "folder").string() + " --exp-name paired" + train,
                     dir / "train.log") == 0);
  const auto log = test::slurp(dir / "train.log");
  INFO(log);
  CHECK(log.find("posteriors [8, 4, 4]") != std::string::npos);
  CHECK(log.find("target encoders: hog-x-g4_d32 on ") != std::string::npos);
  const auto proj = test::jsonl_values(dir / "runs" / "paired" / "log.jsonl", "proj_loss");
  REQUIRE(proj.size() == 20);
  CHECK(proj.front() != 0);
  for (const auto& [f, rows] : {std::pair<const char*, int>{"ground_truth.png", 1}, {"0000020.png", 3}}) {
    INFO(f);
    const auto png = io::read_png((dir / "runs" / "paired" / "samples" / f).string());
    CHECK(png.mode == "RGB");
    // 32 px images decoded from 4x4 latents: one row per class of the grid; the first batch's 4 in one row.
    CHECK(png.pixels.size(0) >= rows * 32);
    CHECK(png.pixels.size(0) < (rows + 1) * 32);
    CHECK(png.pixels.size(1) >= 4 * 32);
  }
  fs::copy_file(dir / "runs" / "paired" / "samples" / "0000020.png", fs::temp_directory_path() / "irepa_latent_pipeline_grid.png",
                fs::copy_options::overwrite_existing);  // kept, to look at

  // The same with the images stored beside the posteriors (--keep-images), no --image-dir.
  REQUIRE(encode_tool(enc + (dir / "post_img").string() + " --keep-images", dir / "enc2.log") == 0);
  const data::ShardedDataset with_images((dir / "post_img").string());
  CHECK(with_images.image_shape() == Shape{3, 32, 32});
  REQUIRE(train_tool("--data-dir " + (dir / "post_img").string() + " --exp-name stored" + train, dir / "train2.log") == 0);
  // The same samples and draws as the paired run: the same losses.
  const auto proj2 = test::jsonl_values(dir / "runs" / "stored" / "log.jsonl", "proj_loss");
  REQUIRE(proj2.size() == 20);
  for (std::size_t i = 0; i < 20; ++i) CHECK(proj2[i] == proj[i]);

  // Posteriors without stats, and --vae without them, are refused before training.
  CHECK(train_tool("--data-dir " + (dir / "post").string() + " --output-dir " + (dir / "runs").string() + " --exp-name nostats --model custom --depth 2 --hidden-size 32"
                   " --num-heads 2 --patch-size 1 --num-classes 3 --batch-size 4 --max-train-steps 2",
                   dir / "nostats.log") != 0);
  CHECK(test::slurp(dir / "nostats.log").find("latent statistics") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("the reference's data/ folders (Hugging Face save_to_disk, Arrow) through irepa-train --dataset hf and irepa-encode", "[latent][tool][arrow]") {
  const fs::path dir = fs::temp_directory_path() / ("irepa_hf_pipeline_" + std::to_string(test::rng().seed()));
  fs::remove_all(dir);
  const fs::path arrow = fs::path(IREPA_TEST_DATA_DIR) / "arrow";
  fs::create_directories(dir / "data");
  for (const char* sub : {"imagenet-latents-images", "imagenet-latents-sdvae-ft-mse-f8d4"})
    fs::copy(arrow / sub, dir / "data" / sub, fs::copy_options::recursive);
  data::LatentStats st{Tensor<double>(Shape{4}), Tensor<double>(Shape{4})};
  for (std::int64_t c = 0; c < 4; ++c) st.scale[c] = 0.5 + 0.1 * static_cast<double>(c), st.bias[c] = 0.05 * static_cast<double>(c);
  st.save((dir / "stats.safetensors").string());
  const std::string train = "--dataset hf --data-dir " + (dir / "data").string() + " --output-dir " + (dir / "runs").string() +
                            " --latents-stats " + (dir / "stats.safetensors").string() +
                            " --enc-type hog-x-g4_d32 --model custom --depth 2 --hidden-size 32 --num-heads 2 --patch-size 1"
                            " --num-classes 3 --encoder-depth 1 --batch-size 4 --max-train-steps 6 --checkpointing-steps 6 --log-every 3"
                            " --learning-rate 1e-3 --threads 2 --seed 2 --exp-name hf";
  REQUIRE(train_tool(train, dir / "train.log") == 0);
  const auto log = test::slurp(dir / "train.log");
  INFO(log);
  CHECK(log.find("7 samples of posteriors [8, 4, 4]") != std::string::npos);
  CHECK(log.find("target encoders: hog-x-g4_d32 on ") != std::string::npos);
  CHECK(test::jsonl_values(dir / "runs" / "hf" / "log.jsonl", "proj_loss").size() == 6);

  // irepa-encode reads the images folder too: 7 posteriors, labels from the label column.
  SdVae<float> vae(small_vae());
  vae.init_random(test::rng().seed(), 0.1f);
  save_sd_vae(vae, (dir / "vae.safetensors").string());
  REQUIRE(encode_tool("encode --source " + (dir / "data" / "imagenet-latents-images").string() + " --vae " + (dir / "vae.safetensors").string() +
                          " --resolution 32 --threads 2 --dest " + (dir / "post").string(),
                      dir / "enc.log") == 0);
  const data::ShardedDataset post((dir / "post").string());
  CHECK(post.size() == 7);
  io::SafeTensorsFile want((arrow / "expected.safetensors").string());
  const auto labels = want.load<std::int64_t>("labels");
  const auto b = post.get<float>({0, 6});
  CHECK(b.y[0] == labels[0]);
  CHECK(b.y[1] == labels[6]);
  fs::remove_all(dir);
}
