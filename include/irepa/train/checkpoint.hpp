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

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "irepa/core/host_twin.hpp"
#include "irepa/core/rng.hpp"
#include "irepa/core/checked.hpp"
#include "irepa/io/json.hpp"
#include "irepa/io/params.hpp"
#include "irepa/io/safetensors.hpp"
#include "irepa/train/optim.hpp"

namespace irepa {

inline std::string ema_prefix(std::size_t k) { return k == 0 ? "ema." : "ema" + std::to_string(k) + "."; }


/// What a checkpoint holds besides tensors.
struct CheckpointInfo {
  std::int64_t step = 0;
  nlohmann::json config;  // the run's settings, as the trainer resolved them (the reference's args for its checkpoints)
  bool reference = false;  // a torch.save checkpoint of the reference's train.py
};

/// A checkpoint's metadata, every field checked for its type and range.
struct CheckpointMeta {
  std::int64_t step = 0, optimizer_steps = 0;
  struct EmaMeta {
    double decay = 0;
    std::int64_t every = 1;
  };
  std::vector<EmaMeta> emas;
  std::uint64_t rng_seed = 0, rng_stream = 0, rng_position = 0;
  nlohmann::json config;  // an object
};

namespace detail {
/// A decimal count in [0, 2^62] from metadata text (no sign, no spaces, no exponent).
inline std::int64_t parse_count(const std::string& text, const std::string& path, const char* key) {
  IREPA_CHECK(!text.empty() && text.size() <= 19 && text.find_first_not_of("0123456789") == std::string::npos,
              "load_checkpoint: '{}' metadata '{}' is '{}', expected a count (0, 1, 2, ...)", path, key,
              text.size() > 40 ? text.substr(0, 40) + "..." : text);
  const std::int64_t v = std::stoll(text);
  IREPA_CHECK(v <= kMaxSize, "load_checkpoint: '{}' metadata '{}' is {}, too large to be real", path, key, v);
  return v;
}
inline std::uint64_t json_u64(const nlohmann::json& j, const char* key, const std::string& path, const char* field) {
  IREPA_CHECK(j.contains(key) && j[key].is_number_unsigned(), "load_checkpoint: '{}' metadata '{}' needs '{}' as a non-negative integer", path,
              field, key);
  return j[key].get<std::uint64_t>();
}
}  // namespace detail

/// The metadata of an irepa checkpoint, validated: the format, step and optimizer steps (counts,
/// optimizer steps <= step), the EMAs (decay in [0, 1], update interval >= 1), the RNG state
/// (unsigned integers) and the config (a JSON object). Anything else is an Error naming the
/// file, the field and what was found.
inline CheckpointMeta read_checkpoint_meta(const io::SafeTensorsFile& f) {
  const std::string& path = f.path();
  IREPA_CHECK(f.metadata("format") == std::optional<std::string>("irepa-checkpoint-v1"),
              "load_checkpoint: '{}' is not an irepa checkpoint (metadata format is '{}', expected 'irepa-checkpoint-v1')", path,
              f.metadata("format").value_or("none").substr(0, 60));
  for (const char* key : {"step", "optimizer_steps", "emas", "rng", "config"})
    IREPA_CHECK(f.metadata(key).has_value(), "load_checkpoint: '{}' has no '{}' metadata", path, key);
  CheckpointMeta m;
  m.step = detail::parse_count(*f.metadata("step"), path, "step");
  m.optimizer_steps = detail::parse_count(*f.metadata("optimizer_steps"), path, "optimizer_steps");
  IREPA_CHECK(m.optimizer_steps <= m.step, "load_checkpoint: '{}' has {} optimizer steps after {} training steps", path, m.optimizer_steps,
              m.step);
  const std::string where = fmt::format("load_checkpoint: '{}' metadata", path);
  const nlohmann::json emas = io::parse_json(*f.metadata("emas"), where + " 'emas'");
  IREPA_CHECK(emas.is_array() && !emas.empty() && emas.size() <= 2, "{} 'emas' is {}, expected a list of one or two EMAs", where,
              io::json_brief(emas));
  for (const auto& e : emas) {
    IREPA_CHECK(e.is_object() && e.contains("decay") && e["decay"].is_number() && e.contains("every") && e["every"].is_number_integer(),
                "{} 'emas' has {}, expected {{\"decay\": number, \"every\": integer}}", where, io::json_brief(e));
    const double d = e["decay"].get<double>();
    const std::int64_t every = e["every"].get<std::int64_t>();
    IREPA_CHECK(std::isfinite(d) && d >= 0 && d <= 1 && every >= 1, "{} 'emas' has decay {} every {} steps; expected a decay in [0, 1] and every >= 1",
                where, d, every);
    m.emas.push_back({d, every});
  }
  const nlohmann::json rng = io::parse_json(*f.metadata("rng"), where + " 'rng'");
  IREPA_CHECK(rng.is_object(), "{} 'rng' is {}, expected an object", where, io::json_brief(rng));
  m.rng_seed = detail::json_u64(rng, "seed", path, "rng");
  m.rng_stream = detail::json_u64(rng, "stream", path, "rng");
  m.rng_position = detail::json_u64(rng, "position", path, "rng");
  m.config = io::parse_json(*f.metadata("config"), where + " 'config'");
  IREPA_CHECK(m.config.is_object(), "{} 'config' is {}, expected an object of settings", where, io::json_brief(m.config));
  return m;
}

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

/// A checkpoint the reference's train.py saved with torch.save: {"model", "ema", "opt", "args",
/// "steps"}. The model and its one EMA are read under their state-dict names; AdamW's moments
/// are opt.state.<i>, where i counts the model's parameters in state-dict order (the reference
/// builds its optimizer from model.parameters(), and SiT has no buffers, so the two orders agree;
/// a file where they cannot is refused). Parameters without optimizer state (pos_embed, which
/// never gets a gradient) keep zero moments. The RNG is the run's own: the reference's torch
/// generators have no counterpart, so a resumed run continues with other noise draws.
template <class Model, class T = typename Model::scalar_type, class D = typename Model::device_type>
CheckpointInfo load_reference_checkpoint(const io::TensorFile& f, Model& model, AdamW<T, D>& opt, const std::vector<Ema<T, D>*>& emas) {
  const std::string& path = f.path();
  const nlohmann::json& obj = f.torch_object();
  IREPA_CHECK(obj.is_object() && obj.contains("model") && obj.contains("ema") && obj.contains("opt") && obj.contains("steps"),
              "load_checkpoint: '{}' is a torch.save file but not a checkpoint of the reference's train.py (expected the keys model, ema, "
              "opt, args, steps; found {})",
              path, io::json_brief(obj));
  IREPA_CHECK(obj["steps"].is_number_integer() && obj["steps"].get<std::int64_t>() >= 0 && obj["steps"].get<std::int64_t>() <= kMaxSize,
              "load_checkpoint: '{}' steps is {}, expected a count", path, io::json_brief(obj["steps"]));
  IREPA_CHECK(emas.size() == 1, "load_checkpoint: '{}' holds the reference's one EMA, the run has {}", path, emas.size());
  CheckpointInfo info{.step = obj["steps"].get<std::int64_t>(), .config = obj.value("args", nlohmann::json::object()), .reference = true};
  // The model's parameters in the file's order: optimizer index i is the i-th.
  std::vector<std::string> order;
  for (const auto& n : f.names())
    if (n.starts_with("model.")) order.push_back(n.substr(6));
  const nlohmann::json& groups = obj["opt"].is_object() ? obj["opt"].value("param_groups", nlohmann::json()) : nlohmann::json();
  IREPA_CHECK(groups.is_array(), "load_checkpoint: '{}' opt has no param_groups list", path);
  std::vector<std::int64_t> ids;
  for (const auto& g : groups) {
    IREPA_CHECK(g.is_object() && g.contains("params") && g["params"].is_array(), "load_checkpoint: '{}' has a param group without params", path);
    for (const auto& id : g["params"]) {
      IREPA_CHECK(id.is_number_integer(), "load_checkpoint: '{}' has a parameter id {}, expected an integer", path, io::json_brief(id));
      ids.push_back(id.get<std::int64_t>());
    }
  }
  IREPA_CHECK(ids.size() == order.size(),
              "load_checkpoint: '{}' optimizes {} parameters, its model holds {} tensors; the optimizer's state cannot be matched to names",
              path, ids.size(), order.size());
  std::map<std::string, std::int64_t> id_of;
  for (std::size_t k = 0; k < ids.size(); ++k) id_of[order[k]] = ids[k];
  // Check everything before anything changes: the EMA's names and shapes, and each moment.
  const auto& arena = model.params();
  io::TensorMismatches problems;
  for (const auto& e : arena.entries()) {
    problems.expect(f, "ema." + e.name, e.shape);
    const auto id = id_of.find(e.name);
    if (id == id_of.end()) continue;  // the model check names it
    for (const char* m : {"exp_avg", "exp_avg_sq"}) {
      const std::string mk = fmt::format("opt.state.{}.{}", id->second, m);
      if (f.contains(mk) && !(f.info(mk).shape == e.shape))
        problems.add("'" + mk + "' (" + e.name + ") has shape " + f.info(mk).shape.str() + ", expected " + e.shape.str());
    }
  }
  problems.fail_if_any("load_checkpoint: '{}' (the reference's layout) does not match the run", path);
  model.load(f, "model.");  // checks its own names; throws before writing anything
  Tensor<T> keep, keep_v;
  const TensorView<T> ev = host_values(emas[0]->values(), keep);
  for (const auto& e : arena.entries()) f.template load_into<T>("ema." + e.name, TensorView<T>(ev.data() + e.offset, e.shape));
  store_values(emas[0]->values(), keep);
  const TensorView<T> m = host_values(opt.exp_avg(), keep), v = host_values(opt.exp_avg_sq(), keep_v);
  std::int64_t steps = 0;
  const nlohmann::json state = obj["opt"].value("state", nlohmann::json());
  for (const auto& e : arena.entries()) {
    const auto id = id_of.at(e.name);
    const std::string base = fmt::format("opt.state.{}.", id);
    TensorView<T> mv(m.data() + e.offset, e.shape), vv(v.data() + e.offset, e.shape);
    if (f.contains(base + "exp_avg")) {
      f.load_into<T>(base + "exp_avg", mv);
      f.load_into<T>(base + "exp_avg_sq", vv);
    } else {
      mv.fill(T(0)), vv.fill(T(0));
    }
    if (f.contains(base + "step")) {  // torch >= 1.12: a 0-d tensor
      steps = std::max(steps, static_cast<std::int64_t>(f.template load<double>(base + "step").data()[0]));
    } else if (state.is_object() && state.contains(std::to_string(id)) && state[std::to_string(id)].contains("step")) {
      const nlohmann::json& s = state[std::to_string(id)]["step"];  // older torch: a number
      IREPA_CHECK(s.is_number(), "load_checkpoint: '{}' opt.state.{}.step is {}", path, id, io::json_brief(s));
      steps = std::max(steps, static_cast<std::int64_t>(s.get<double>()));
    }
  }
  store_values(opt.exp_avg(), keep);
  store_values(opt.exp_avg_sq(), keep_v);
  IREPA_CHECK(steps >= 0 && steps <= info.step, "load_checkpoint: '{}' has {} optimizer steps after {} training steps", path, steps, info.step);
  opt.set_steps(steps);
  return info;
}

/// Restores model, optimizer moments and step, EMAs and the RNG; returns the step and config.
/// Every missing, unexpected or mis-shaped tensor is named in one error, and then nothing has
/// been changed.
template <class Model, class T = typename Model::scalar_type, class D = typename Model::device_type>
CheckpointInfo load_checkpoint(const std::string& path, Model& model, AdamW<T, D>& opt, const std::vector<Ema<T, D>*>& emas,
                               Philox& rng) {
  const io::TensorFile f(path);
  if (f.is_torch()) return load_reference_checkpoint(f, model, opt, emas);
  const CheckpointMeta meta = read_checkpoint_meta(f);
  CheckpointInfo info{.step = meta.step, .config = meta.config};
  IREPA_CHECK(meta.emas.size() == emas.size(), "load_checkpoint: '{}' holds {} EMAs, the run has {}", path, meta.emas.size(),
              emas.size());
  const auto& arena = model.params();
  // Check everything first: the model (names, shapes, nothing extra), then EMAs and moments.
  io::TensorMismatches problems;
  for (std::size_t k = 0; k < emas.size(); ++k)
    for (const auto& e : arena.entries()) problems.expect(f, ema_prefix(k) + e.name, e.shape);
  for (const auto& e : arena.entries()) {
    problems.expect(f, "optim.exp_avg." + e.name, e.shape);
    problems.expect(f, "optim.exp_avg_sq." + e.name, e.shape);
  }
  problems.fail_if_any("load_checkpoint: '{}' does not match the run", path);
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
  opt.set_steps(meta.optimizer_steps);
  const std::int64_t shard_rank = rng.shard_rank(), shard_world = rng.shard_world();  // this process's, not the file's
  rng = Philox(meta.rng_seed, meta.rng_stream);
  rng.set_position(meta.rng_position);
  rng.shard(shard_rank, shard_world);
  return info;
}

}  // namespace irepa
