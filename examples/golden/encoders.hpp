#pragma once
// The target-encoder files of the golden format: HOG (float32, as the reference), the ViT
// families (DINOv2, DINOv3, Perception Encoder) and SAM2's Hiera trunk, each rebuilt from its
// config (unknown keys are errors), run on its uint8 input and compared.

#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "golden/format.hpp"
#include "irepa/models/hog.hpp"
#include "irepa/models/sam2_encoder.hpp"
#include "irepa/models/vit_encoder.hpp"

namespace irepa::golden {

/// The HOG encoder config of an `encoder:hog` golden file; keys it does not know, a block norm
/// other than L2-Hys, or orientations that disagree with dim / cells_per_block^2 are errors.
inline HogConfig hog_setup(const nlohmann::json& c) {
  static const std::set<std::string> known = {"resolution", "grid", "dim", "pixels_per_cell", "cells_per_block",
                                              "orientations", "block_norm", "gray"};
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: HOG config key '{}' is not known", k);
  HogConfig h;
  try {
    h.resolution = c.at("resolution").get<std::int64_t>();
    h.grid = c.at("grid").get<std::int64_t>();
    h.dim = c.at("dim").get<std::int64_t>();
    h.pixels_per_cell = c.value("pixels_per_cell", std::int64_t{2});
    h.cells_per_block = c.value("cells_per_block", std::int64_t{4});
    const std::string norm = c.value("block_norm", std::string("L2-Hys"));
    IREPA_CHECK(norm == "L2-Hys", "golden: HOG block_norm '{}' is not implemented (L2-Hys is)", norm);
  } catch (const nlohmann::json::exception& e) {
    fail("golden: HOG config is missing a key or has a wrong type: {}", e.what());
  }
  h.validate();
  if (c.contains("orientations"))
    IREPA_CHECK(c.at("orientations").get<std::int64_t>() == h.orientations(),
                "golden: HOG config says {} orientations, but dim {} over {}x{} cells per block gives {}",
                c.at("orientations").get<std::int64_t>(), h.dim, h.cells_per_block, h.cells_per_block, h.orientations());
  return h;
}

/// Runs the HOG encoder of an `encoder:hog` golden file (float32, as the reference) on the
/// context's device; rows for the grey image (CPU) and the patch tokens.
template <class Ctx = CpuContext>
std::vector<Row> check_hog(const io::SafeTensorsFile& f, double tol, const Ctx& ctx = Ctx{}) {
  const HogEncoder enc(hog_setup(config_of(f)));
  const auto u8 = f.load<std::uint8_t>("inputs/image");  // [B, 3, H, W]
  Tensor<float> images(u8.shape());
  for (std::int64_t i = 0; i < u8.numel(); ++i) images[i] = static_cast<float>(u8[i]);
  std::vector<Row> rows;
  Tensor<float> tokens;
  if constexpr (std::is_same_v<Ctx, CpuContext>) {
    Tensor<float> gray;
    tokens = enc.encode(ctx, images, &gray);
    if (f.contains("outputs/gray")) rows.push_back({"outputs/gray", rel_error<float>(gray, f.load<double>("outputs/gray").cview()), tol});
  } else {
    const auto on_device = to_device(ctx, images.cview());
    tokens = to_host(ctx, enc.encode(ctx, on_device.cview()).cview());
  }
  rows.push_back({"outputs/patch_tokens", rel_error<float>(tokens, f.load<double>("outputs/patch_tokens").cview()), tol});
  return rows;
}

/// The ViT of an `encoder:dinov2` golden file: keys it does not know are errors.
inline VitConfig dinov2_setup(const nlohmann::json& c) {
  static const std::set<std::string> known = {"embed_dim", "depth", "num_heads", "patch_size", "num_register_tokens",
                                              "layerscale", "resolution", "hub_img_size", "mlp_ratio"};
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: DINOv2 config key '{}' is not known", k);
  VitConfig v;
  try {
    v.embed_dim = c.at("embed_dim").get<std::int64_t>();
    v.depth = c.at("depth").get<std::int64_t>();
    v.heads = c.at("num_heads").get<std::int64_t>();
    v.patch = c.at("patch_size").get<std::int64_t>();
    v.registers = c.value("num_register_tokens", std::int64_t{0});
    v.layerscale = c.value("layerscale", true);
    v.resolution = c.value("resolution", std::int64_t{256});
    v.mlp_ratio = c.value("mlp_ratio", 4.0);
  } catch (const nlohmann::json::exception& e) {
    fail("golden: DINOv2 config is missing a key or has a wrong type: {}", e.what());
  }
  return v;
}

/// The ViT of an `encoder:dinov3` golden file (RoPE as released: separate normalisation, no
/// rescaling at eval); other RoPE options and unknown keys are errors.
inline VitConfig dinov3_setup(const nlohmann::json& c) {
  static const std::set<std::string> known = {"embed_dim",      "depth",     "num_heads",  "patch_size",
                                              "n_storage_tokens", "layerscale", "resolution", "rope_base",
                                              "rope_normalize_coords", "rope_rescale_coords_eval", "norm_eps", "mlp_ratio",
                                              "mask_k_bias", "norm_layer"};
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: DINOv3 config key '{}' is not known", k);
  VitConfig v;
  v.family = VitFamily::DINOv3;
  try {
    v.embed_dim = c.at("embed_dim").get<std::int64_t>();
    v.depth = c.at("depth").get<std::int64_t>();
    v.heads = c.at("num_heads").get<std::int64_t>();
    v.patch = c.at("patch_size").get<std::int64_t>();
    v.registers = c.value("n_storage_tokens", std::int64_t{4});
    v.layerscale = c.value("layerscale", true);
    v.resolution = c.value("resolution", std::int64_t{256});
    v.mlp_ratio = c.value("mlp_ratio", 4.0);
    // The file's config says norm_eps 1e-5, but its numbers were made by DINOv3's default norm
    // layer "layernorm", whose eps is 1e-6 (patch tokens: 7e-16 with 1e-6, 4.3e-6 with 1e-5).
    // The released models use "layernormbf16" (1e-5), which is what vit_config_from_name sets.
    (void)c.value("norm_eps", 1e-5);
    v.norm_eps = c.value("norm_layer", std::string("layernorm")) == "layernormbf16" ? 1e-5 : 1e-6;
    v.mask_k_bias = c.value("mask_k_bias", true);
    const std::string norm = c.value("rope_normalize_coords", std::string("separate"));
    IREPA_CHECK(norm == "separate", "golden: DINOv3 rope_normalize_coords '{}' is not implemented (separate is)", norm);
    IREPA_CHECK(!c.contains("rope_rescale_coords_eval") || c.at("rope_rescale_coords_eval").is_null(),
                "golden: DINOv3 rope_rescale_coords_eval {} is not implemented (null is)", c.at("rope_rescale_coords_eval").dump());
  } catch (const nlohmann::json::exception& e) {
    fail("golden: DINOv3 config is missing a key or has a wrong type: {}", e.what());
  }
  return v;
}

/// The Perception Encoder of an `encoder:pe` golden file; unknown keys are errors. The table's
/// pretraining grid is read from the file's positional_embedding, and checked against the config.
inline VitConfig pe_setup(const nlohmann::json& c) {
  static const std::set<std::string> known = {"width",         "layers",     "heads",     "patch_size", "use_cls_token",
                                              "pretrain_grid", "resolution", "layerscale", "mlp_ratio",  "final_norm"};
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: PE config key '{}' is not known", k);
  VitConfig v;
  v.family = VitFamily::PE, v.norm_eps = 1e-5;
  try {
    v.embed_dim = c.at("width").get<std::int64_t>();
    v.depth = c.at("layers").get<std::int64_t>();
    v.heads = c.at("heads").get<std::int64_t>();
    v.patch = c.at("patch_size").get<std::int64_t>();
    v.cls_token = c.at("use_cls_token").get<bool>();
    v.resolution = c.value("resolution", std::int64_t{256});
    v.layerscale = c.contains("layerscale") && !c.at("layerscale").is_null();
    v.mlp_ratio = c.value("mlp_ratio", 4.0);
    v.final_norm = c.value("final_norm", false);
  } catch (const nlohmann::json::exception& e) {
    fail("golden: PE config is missing a key or has a wrong type: {}", e.what());
  }
  return v;
}

/// An encoder file's common rows: its uint8 inputs/image preprocessed, then encoded, on the
/// context's device (the outputs come back to the host to be compared).
template <class Enc, class Ctx>
std::vector<Row> encoder_rows(const Enc& enc, const io::SafeTensorsFile& f, double tol, const Ctx& ctx) {
  using T = typename Enc::scalar_type;
  const auto u8 = f.load<std::uint8_t>("inputs/image");  // [B, 3, R, R]
  Tensor<T> images(u8.shape());
  for (std::int64_t i = 0; i < u8.numel(); ++i) images[i] = static_cast<T>(u8[i]);
  const auto x = enc.preprocess(ctx, to_device(ctx, images.cview()));
  const auto tokens = enc.forward(ctx, x);
  return {{"outputs/preprocessed", rel_error<T>(to_host(ctx, x.cview()), f.load<double>("outputs/preprocessed").cview()), tol},
          {"outputs/patch_tokens", rel_error<T>(to_host(ctx, tokens.cview()), f.load<double>("outputs/patch_tokens").cview()), tol}};
}

/// Runs a ViT encoder golden file in T: the preprocessed input, the patch tokens, and (when the
/// file has the released table, params_original/pos_embed) our resampling of it.
/// On the CPU by default; with a CudaContext the encoder is built and run on the GPU.
template <class T, class Ctx = CpuContext>
std::vector<Row> check_vit_encoder(const io::SafeTensorsFile& f, double tol, const Ctx& ctx = Ctx{}) {
  const auto model = f.metadata("model").value_or("");
  IREPA_CHECK(model == "encoder:dinov2" || model == "encoder:dinov3" || model == "encoder:pe",
              "golden: encoder '{}' is not implemented yet (encoder:dinov2, encoder:dinov3 and encoder:pe are)", model);
  VitConfig cfg = model == "encoder:dinov2" ? dinov2_setup(config_of(f))
                  : model == "encoder:dinov3" ? dinov3_setup(config_of(f))
                                              : pe_setup(config_of(f));
  if (model == "encoder:pe" && config_of(f).contains("pretrain_grid")) {
    const auto G = config_of(f).at("pretrain_grid").get<std::int64_t>();
    const auto rows = ParamsFile(f)->info("params/positional_embedding").shape[0];
    IREPA_CHECK(rows == G * G + (cfg.cls_token ? 1 : 0), "golden: PE positional_embedding has {} rows, config says grid {} (cls {})",
                rows, G, cfg.cls_token);
  }
  const ParamsFile params(f);
  cfg.block_chunks = VitEncoder<T>::detect_block_chunks(*params, "params/", cfg.depth);
  VitEncoder<T, typename Ctx::device_type> enc(cfg);
  enc.load(*params, "params/");
  std::vector<Row> rows = encoder_rows(enc, f, tol, ctx);
  if (f.contains("params_original/pos_embed")) {
    const auto resampled = VitEncoder<T>::resample_pos_embed(f.load<T>("params_original/pos_embed"), cfg.grid());
    rows.push_back({"params/pos_embed (resampled from params_original)",
                    rel_error<T>(resampled, params->load<double>("params/pos_embed").cview()), tol});
  }
  return rows;
}

/// The SAM2 trunk of an `encoder:sam2` file (scripts/golden/make_sam2_case.py): the
/// Sam2HieraDetConfig fields by their HF names plus the resolution; unknown keys are errors.
inline Sam2Config sam2_setup(const nlohmann::json& c) {
  static const std::set<std::string> known = {
      "resolution",          "hidden_size",       "embed_dim_per_stage",     "num_attention_heads_per_stage",
      "blocks_per_stage",    "window_size_per_stage", "global_attention_blocks", "window_positional_embedding_background_size",
      "num_query_pool_stages", "query_stride",    "mlp_ratio",               "layer_norm_eps"};
  for (const auto& [k, v] : c.items()) IREPA_CHECK(known.contains(k), "golden: SAM2 config key '{}' is not known", k);
  Sam2Config s;
  try {
    s.resolution = c.at("resolution").get<std::int64_t>();
    s.dims = c.at("embed_dim_per_stage").get<std::vector<std::int64_t>>();
    IREPA_CHECK(c.at("hidden_size").get<std::int64_t>() == s.dims.at(0), "golden: SAM2 hidden_size {} differs from the first stage's {}",
                c.at("hidden_size").get<std::int64_t>(), s.dims.at(0));
    s.heads = c.at("num_attention_heads_per_stage").get<std::vector<std::int64_t>>();
    s.blocks = c.at("blocks_per_stage").get<std::vector<std::int64_t>>();
    s.windows = c.at("window_size_per_stage").get<std::vector<std::int64_t>>();
    s.global_attn = c.at("global_attention_blocks").get<std::vector<std::int64_t>>();
    const auto bkg = c.at("window_positional_embedding_background_size").get<std::vector<std::int64_t>>();
    IREPA_CHECK(bkg.size() == 2, "golden: SAM2 background size has {} values, expected 2", bkg.size());
    s.pos_bkg_h = bkg[0], s.pos_bkg_w = bkg[1];
    s.q_pool_stages = c.at("num_query_pool_stages").get<std::int64_t>();
    const auto qs = c.at("query_stride").get<std::vector<std::int64_t>>();
    IREPA_CHECK(qs.size() == 2 && qs[0] == qs[1], "golden: SAM2 query_stride {} is not a square stride", c.at("query_stride").dump());
    s.q_stride = qs[0];
    s.mlp_ratio = c.at("mlp_ratio").get<double>();
    s.norm_eps = c.at("layer_norm_eps").get<double>();
  } catch (const nlohmann::json::exception& e) {
    fail("golden: SAM2 config is missing a key or has a wrong type: {}", e.what());
  }
  s.validate("golden SAM2 config");
  return s;
}

/// Runs an `encoder:sam2` file in T: the preprocessed input and the trunk's tokens (on the GPU
/// with a CudaContext).
template <class T, class Ctx = CpuContext>
std::vector<Row> check_sam2_encoder(const io::SafeTensorsFile& f, double tol, const Ctx& ctx = Ctx{}) {
  Sam2Encoder<T, typename Ctx::device_type> enc(sam2_setup(config_of(f)));
  enc.load(*ParamsFile(f), "params/vision_encoder.backbone.");
  return encoder_rows(enc, f, tol, ctx);
}

}  // namespace irepa::golden
