#pragma once
// Frozen target encoders chosen by the reference's names at run time (--enc-type): a small
// type-erased handle so that the trainer can hold several of different kinds. Each maps clean
// images [B, C, H, W] in 0..255 to patch tokens [B, T, D] without gradient.
//
// The factories read and prepare an encoder on the host (host-compiled code; nvcc sees the
// handle and the device-generic encoders only). The trainer then places each one where its
// model runs (place_encoders): every kind (ViT, SAM, SAM2, VGG, HOG) as its twin on the model's
// device, its weights copied there once. A handle without a host model (one a user builds
// around their own function) runs on the host, its tokens going up with the batch.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "irepa/io/files.hpp"
#include "irepa/io/json.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/models/hog.hpp"
#include "irepa/models/sam2_encoder.hpp"
#include "irepa/models/sam_encoder.hpp"
#include "irepa/models/vgg_encoder.hpp"
#include "irepa/models/vit_encoder.hpp"

#if !defined(__CUDACC__)
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#endif

namespace irepa {

struct TargetEncoder {
  std::string name;          // the reference's name, e.g. hog-x-g16_d128
  std::int64_t tokens = 0;   // T (a square grid)
  std::int64_t dim = 0;      // D
  std::function<Tensor<float>(const CpuContext&, ConstView<float>)> encode;  // [B, C, H, W] 0..255 -> [B, T, D], on the host
  // The loaded host model, from which place_encoders builds its twin on the model's device;
  // empty for an encoder that runs on the host only (a user's own function).
  std::variant<std::monostate, std::shared_ptr<const VitEncoder<float>>, std::shared_ptr<const SamEncoder<float>>,
               std::shared_ptr<const Sam2Encoder<float>>, std::shared_ptr<const VggEncoder<float>>, std::shared_ptr<const HogEncoder>>
      host_model;
};

/// An online target encoder as a trainer on device D runs it: on D (on_device), or, where that
/// is empty, on the host (source->encode) with its tokens uploaded.
template <class D>
struct PlacedEncoder {
  const TargetEncoder* source = nullptr;
  std::function<Tensor<float, D>(const ContextOf<D>&, ConstView<float, D>)> on_device;
  bool on_host() const { return !on_device; }
};

namespace detail {
/// On the CPU the host encoder is already on the model's device.
inline PlacedEncoder<Cpu> place_encoder(const TargetEncoder& e, Cpu) { return {&e, e.encode}; }
/// Elsewhere an encoder runs as its twin on D (weights copied once); one without a host model
/// stays on the host.
template <class D>
PlacedEncoder<D> place_encoder(const TargetEncoder& e, D) {
  PlacedEncoder<D> p{&e, {}};
  std::visit(
      [&](const auto& host) {
        using Held = std::decay_t<decltype(host)>;
        if constexpr (!std::is_same_v<Held, std::monostate>) {
          using Twin = typename Held::element_type::template On<D>;
          auto twin = std::make_shared<const Twin>(Twin::from_host(*host));
          p.on_device = [twin](const ContextOf<D>& ctx, ConstView<float, D> images) { return twin->encode(ctx, images); };
        }
      },
      e.host_model);
  return p;
}
}  // namespace detail

/// The encoders placed for a model on device D (they refer to `online`, which must outlive them).
template <class D>
std::vector<PlacedEncoder<D>> place_encoders(const std::vector<TargetEncoder>& online) {
  std::vector<PlacedEncoder<D>> out;
  for (const auto& e : online) out.push_back(detail::place_encoder(e, D{}));
  return out;
}

/// Where each placed encoder runs, for the log: "dinov2-vit-b on cuda, hog-x-g16_d128 on the host".
template <class D>
std::string describe_placement(const std::vector<PlacedEncoder<D>>& placed) {
  std::string s;
  for (const auto& p : placed)
    s += fmt::format("{}{} on {}", s.empty() ? "" : ", ", p.source->name, p.on_host() ? std::string_view("the host") : D::name);
  return s.empty() ? "none" : s;
}

#if !defined(__CUDACC__)
/// A ViT target encoder by name around a loaded (or randomly initialised) host model (its
/// forward is instantiated in host code only, as the other encoders').
inline TargetEncoder vit_target_encoder(std::string name, std::shared_ptr<const VitEncoder<float>> enc) {
  TargetEncoder e{std::move(name), enc->tokens(), enc->dim(), {}, enc};  // host_model: the ViT
  e.encode = [enc](const CpuContext& ctx, ConstView<float> images) { return enc->encode(ctx, images); };
  return e;
}

/// Where ViT encoder weights are looked up: weights_dir/<name>.safetensors, else the released
/// torch.save state dict as weights_dir/<name>.pth or .pt (read directly), with weights_dir from
/// the argument, else $IREPA_ENCODER_DIR, else ./encoders.
inline std::filesystem::path encoder_weights_path(std::string_view name, const std::string& weights_dir = {}) {
  std::string dir = weights_dir;
  if (dir.empty()) {
    const char* e = std::getenv("IREPA_ENCODER_DIR");
    dir = e && *e ? e : "encoders";
  }
  // dinov2mixed(reg) is DINOv2 (with registers) read differently: the same weights file.
  std::string file(name);
  if (file.starts_with("dinov2mixed")) file = "dinov2" + file.substr(11);
  const auto st = std::filesystem::path(dir) / (file + ".safetensors");
  if (!std::filesystem::exists(st))
    for (const char* ext : {".pth", ".pt"})
      if (const auto pt = std::filesystem::path(dir) / (file + ext); std::filesystem::exists(pt)) return pt;
  return st;
}

namespace detail {
/// An encoder type with load(SafeTensorsFile) / encode / tokens / dim, read from `path`; `hint`
/// says where its weights come from. A device-generic one is kept as the host model to place.
template <class Enc, class Config>
TargetEncoder load_encoder(std::string_view name, const Config& cfg, const std::filesystem::path& path, std::string_view hint) {
  IREPA_CHECK(std::filesystem::exists(path),
              "target encoder '{}': weights '{}' not found ({}; set the folder with --encoder-dir or IREPA_ENCODER_DIR)", name,
              path.string(), hint);
  auto enc = std::make_shared<Enc>(cfg);
  enc->load(io::SafeTensorsFile(path.string()));
  TargetEncoder e{std::string(name), enc->tokens(), enc->dim(),
                  [enc](const CpuContext& ctx, ConstView<float> images) { return enc->encode(ctx, images); }, {}};
  if constexpr (std::is_constructible_v<decltype(e.host_model), std::shared_ptr<const Enc>>) e.host_model = std::shared_ptr<const Enc>(enc);
  return e;
}
}  // namespace detail

/// One encoder by name, working at `resolution` (the images' size): the weight-free HOG, or a
/// ViT whose weights are read from encoder_weights_path(name, weights_dir).
inline TargetEncoder make_target_encoder(std::string_view name, std::int64_t resolution, const std::string& weights_dir = {}) {
  if (name.starts_with("hog-")) {
    auto enc = std::make_shared<HogEncoder>(name, resolution);
    return {enc->name(), enc->tokens(), enc->dim(),
            [enc](const CpuContext& ctx, ConstView<float> images) { return enc->encode(ctx, images); },
            std::shared_ptr<const HogEncoder>(enc)};
  }
  const auto path = encoder_weights_path(name, weights_dir);
  if (name.starts_with("vgg-"))  // VGG16 pool4 (torchvision's features weights)
    return detail::load_encoder<VggEncoder<float>>(
        name, vgg_config_from_name(name, resolution), path,
        "convert torchvision's vgg16_features-amdegroot-88682ab5.pth with tools/convert_encoder.py");
  if (name.starts_with("sam-vit-"))  // SAM (v1): HuggingFace SamModel's vision encoder
    return detail::load_encoder<SamEncoder<float>>(
        name, sam_config_from_name(name, resolution), path,
        "the model.safetensors of facebook/sam-vit-{base,large,huge} from HuggingFace, renamed");
  if (name.starts_with("sam2-vit-"))  // SAM2: the Hiera trunk of HuggingFace's Sam2Model
    return detail::load_encoder<Sam2Encoder<float>>(
        name, sam2_config_from_name(name, resolution), path,
        "the model.safetensors of facebook/sam2-hiera-{small,base-plus,large} from HuggingFace, renamed");
  VitConfig cfg;
  if (name.starts_with("webssl-")) {  // HuggingFace Dinov2Model: the architecture is in its config.json
    auto json_path = path;
    json_path.replace_extension(".json");
    IREPA_CHECK(std::filesystem::exists(json_path),
                "target encoder '{}': '{}' not found (copy the config.json of facebook/{} from HuggingFace there, beside the weights)",
                name, json_path.string(), [&] {  // webssl-vit-dino1b_full2b_224 -> webssl-dino1b-full2b-224, as the reference
                  std::string repo = "webssl-" + std::string(name.substr(name.starts_with("webssl-vit-") ? 11 : 7));
                  std::replace(repo.begin(), repo.end(), '_', '-');
                  return repo;
                }());
    nlohmann::json j;
    try {
      j = io::parse_json(io::read_regular_file(json_path.string(), "target encoder config"), json_path.string());
    } catch (const Error& e) {
      fail("target encoder '{}': {}", name, e.what());
    }
    cfg = vit_config_from_hf_dinov2(j, resolution);
  } else {
    cfg = vit_config_from_name(name, resolution);  // an unknown name is an error that lists the known ones
  }
  IREPA_CHECK(std::filesystem::exists(path),
              "target encoder '{}': weights '{}' not found (convert the released checkpoint with tools/convert_encoder.py; "
              "set the folder with --encoder-dir or IREPA_ENCODER_DIR)",
              name, path.string());
  io::SafeTensorsFile f(path.string());
  // A full SigLIP checkpoint from HuggingFace holds the vision tower under "vision_model."; a
  // Dinov2 one saved from a task model under "dinov2.".
  std::string prefix;
  if (cfg.family == VitFamily::SigLIP && f.contains("vision_model.embeddings.patch_embedding.weight")) prefix = "vision_model.";
  if (cfg.family == VitFamily::HFDinov2 && f.contains("dinov2.embeddings.cls_token")) prefix = "dinov2.";
  cfg.block_chunks = VitEncoder<float>::detect_block_chunks(f, prefix, cfg.depth);
  auto enc = std::make_shared<VitEncoder<float>>(cfg);
  enc->load(f, prefix);
  return vit_target_encoder(std::string(name), std::move(enc));
}

/// A comma-separated list ("hog-x-g8_d32,hog-x-g8_d128"); an empty string gives none.
inline std::vector<TargetEncoder> make_target_encoders(std::string_view names, std::int64_t resolution,
                                                       const std::string& weights_dir = {}) {
  std::vector<TargetEncoder> out;
  std::size_t start = 0;
  while (start < names.size()) {
    const auto end = std::min(names.find(',', start), names.size());
    const auto one = names.substr(start, end - start);
    IREPA_CHECK(!one.empty(), "target encoders '{}': an empty name between commas", names);
    out.push_back(make_target_encoder(one, resolution, weights_dir));
    start = end + 1;
  }
  return out;
}

#endif  // !__CUDACC__

}  // namespace irepa
