#pragma once
// Training checkpoints: one safetensors file holding everything a run needs to continue
// bit-identically:
//   model.<name>                 parameters and buffers (state_dict names)
//   ema.<name>, ema<k>.<name>    each EMA (the first without an index, as the reference's "ema")
//   optim.exp_avg.<name>, optim.exp_avg_sq.<name>   AdamW's moments
// and metadata: format "irepa-checkpoint-v1", the step, AdamW's step count, each EMA's decay,
// the RNG (seed, stream, position) and the run's full configuration as JSON. Written to a
// temporary file and renamed; loading checks every name and shape before changing anything.
// A model, optimizer and EMAs on a device are saved and restored through host copies; the file
// is the same, so a run can resume on another device.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/train/optim.hpp"

namespace irepa {

inline std::string ema_prefix(std::size_t k) { return k == 0 ? "ema." : "ema" + std::to_string(k) + "."; }


/// What a checkpoint holds besides tensors.
struct CheckpointInfo {
  std::int64_t step = 0;
  nlohmann::json config;  // the run's settings, as the trainer resolved them
};

template <class Model, class T = typename Model::scalar_type, class D = typename Model::device_type>
void save_checkpoint(const std::string& path, const Model& model, const AdamW<T, D>& opt, const std::vector<const Ema<T, D>*>& emas,
                     const Philox& rng, const CheckpointInfo& info) {
  io::SafeTensorsWriter w;
  model.save(w, "model.");
  const auto& arena = model.params();
  Tensor<T> keep;
  for (std::size_t k = 0; k < emas.size(); ++k) {
    IREPA_CHECK(emas[k]->values().numel() == arena.numel(), "save_checkpoint: EMA {} has {} values, the model {}", k,
                emas[k]->values().numel(), arena.numel());
    const TensorView<T> ev = host_values(emas[k]->values(), keep);
    for (const auto& e : arena.entries()) w.add<T>(ema_prefix(k) + e.name, TensorView<const T>(ev.data() + e.offset, e.shape));
  }
  Tensor<T> keep_v;
  const TensorView<T> m = host_values(opt.exp_avg(), keep), v = host_values(opt.exp_avg_sq(), keep_v);
  for (const auto& e : arena.entries()) {
    w.add<T>("optim.exp_avg." + e.name, TensorView<const T>(m.data() + e.offset, e.shape));
    w.add<T>("optim.exp_avg_sq." + e.name, TensorView<const T>(v.data() + e.offset, e.shape));
  }
  nlohmann::json decays = nlohmann::json::array();
  for (const auto* e : emas) decays.push_back({{"decay", e->decay()}, {"every", e->every()}});
  w.set_metadata("format", "irepa-checkpoint-v1");
  w.set_metadata("step", std::to_string(info.step));
  w.set_metadata("optimizer_steps", std::to_string(opt.steps()));
  w.set_metadata("emas", decays.dump());
  w.set_metadata("rng", nlohmann::json{{"seed", rng.seed()}, {"stream", rng.stream()}, {"position", rng.position()}}.dump());
  w.set_metadata("config", info.config.dump());
  w.write(path);
}

/// Restores model, optimizer moments and step, EMAs and the RNG; returns the step and config.
/// Every missing, unexpected or mis-shaped tensor is named in one error, and then nothing has
/// been changed.
template <class Model, class T = typename Model::scalar_type, class D = typename Model::device_type>
CheckpointInfo load_checkpoint(const std::string& path, Model& model, AdamW<T, D>& opt, const std::vector<Ema<T, D>*>& emas,
                               Philox& rng) {
  const io::SafeTensorsFile f(path);
  IREPA_CHECK(f.metadata("format") == std::optional<std::string>("irepa-checkpoint-v1"),
              "load_checkpoint: '{}' is not an irepa checkpoint (metadata format is '{}', expected 'irepa-checkpoint-v1')", path,
              f.metadata("format").value_or("none"));
  for (const char* key : {"step", "optimizer_steps", "emas", "rng", "config"})
    IREPA_CHECK(f.metadata(key).has_value(), "load_checkpoint: '{}' has no '{}' metadata", path, key);
  CheckpointInfo info;
  nlohmann::json rng_state, ema_meta;
  std::int64_t opt_steps = 0;
  try {
    info.step = std::stoll(*f.metadata("step"));
    opt_steps = std::stoll(*f.metadata("optimizer_steps"));
    info.config = nlohmann::json::parse(*f.metadata("config"));
    rng_state = nlohmann::json::parse(*f.metadata("rng"));
    ema_meta = nlohmann::json::parse(*f.metadata("emas"));
  } catch (const std::exception& e) {
    fail("load_checkpoint: '{}' has unreadable metadata: {}", path, e.what());
  }
  IREPA_CHECK(ema_meta.size() == emas.size(), "load_checkpoint: '{}' holds {} EMAs, the run has {}", path, ema_meta.size(),
              emas.size());
  const auto& arena = model.params();
  // Check everything first: the model (names, shapes, nothing extra), then EMAs and moments.
  std::vector<std::string> problems;
  auto want = [&](const std::string& key, const Shape& shape) {
    if (!f.contains(key))
      problems.push_back("missing '" + key + "' " + shape.str());
    else if (!(f.info(key).shape == shape))
      problems.push_back("'" + key + "' has shape " + f.info(key).shape.str() + ", expected " + shape.str());
  };
  for (std::size_t k = 0; k < emas.size(); ++k)
    for (const auto& e : arena.entries()) want(ema_prefix(k) + e.name, e.shape);
  for (const auto& e : arena.entries()) {
    want("optim.exp_avg." + e.name, e.shape);
    want("optim.exp_avg_sq." + e.name, e.shape);
  }
  if (!problems.empty()) {
    std::string msg;
    for (std::size_t i = 0; i < problems.size() && i < 20; ++i) msg += "\n  " + problems[i];
    fail("load_checkpoint: '{}' does not match the run:{}", path, msg);
  }
  model.load(f, "model.");  // checks its own names; throws before writing anything
  // On a device: staged on the host (a copy of the current values, so that anything a file
  // does not hold stays as it was), then uploaded.
  Tensor<T> keep;
  for (std::size_t k = 0; k < emas.size(); ++k) {
    const TensorView<T> ev = host_values(emas[k]->values(), keep);
    for (const auto& e : arena.entries()) f.load_into<T>(ema_prefix(k) + e.name, TensorView<T>(ev.data() + e.offset, e.shape));
    store_values(emas[k]->values(), keep);
  }
  Tensor<T> keep_v;
  const TensorView<T> m = host_values(opt.exp_avg(), keep), v = host_values(opt.exp_avg_sq(), keep_v);
  for (const auto& e : arena.entries()) {
    f.load_into<T>("optim.exp_avg." + e.name, TensorView<T>(m.data() + e.offset, e.shape));
    f.load_into<T>("optim.exp_avg_sq." + e.name, TensorView<T>(v.data() + e.offset, e.shape));
  }
  store_values(opt.exp_avg(), keep);
  store_values(opt.exp_avg_sq(), keep_v);
  opt.set_steps(opt_steps);
  const std::int64_t shard_rank = rng.shard_rank(), shard_world = rng.shard_world();  // this process's, not the file's
  rng = Philox(rng_state.at("seed").get<std::uint64_t>(), rng_state.at("stream").get<std::uint64_t>());
  rng.set_position(rng_state.at("position").get<std::uint64_t>());
  rng.shard(shard_rank, shard_world);
  return info;
}

}  // namespace irepa
