#pragma once
// WebSSL (webssl-*): DINOv2 computed with HuggingFace Dinov2Model's names; the architecture
// comes from the config.json shipped beside the weights (vit_config_from_hf_dinov2). Names:
// embeddings.{cls_token, mask_token, position_embeddings, patch_embeddings.projection},
// encoder.layer.<i>.{norm1, attention.attention.{query,key,value} (fused at load),
// attention.output.dense, layer_scale1.lambda1, norm2, mlp.fc1 | mlp.weights_in,
// mlp.fc2 | mlp.weights_out, layer_scale2.lambda1}, layernorm.

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "irepa/core/error.hpp"
#include "irepa/models/vit/config.hpp"

namespace irepa {

/// A HuggingFace Dinov2Model's config.json -> our config. Only what Dinov2Model computes with
/// the reference's inputs is accepted.
inline VitConfig vit_config_from_hf_dinov2(const nlohmann::json& j, std::int64_t resolution = 256) {
  VitConfig c;
  c.family = VitFamily::HFDinov2, c.resolution = resolution;
  try {
    const std::string type = j.value("model_type", std::string("dinov2"));
    IREPA_CHECK(type == "dinov2", "HF config: model_type '{}' is not dinov2", type);
    const std::string act = j.value("hidden_act", std::string("gelu"));
    IREPA_CHECK(act == "gelu", "HF config: hidden_act '{}' is not implemented (gelu is)", act);
    IREPA_CHECK(j.value("qkv_bias", true), "HF config: qkv_bias false is not implemented");
    c.embed_dim = j.at("hidden_size").get<std::int64_t>();
    c.depth = j.at("num_hidden_layers").get<std::int64_t>();
    c.heads = j.at("num_attention_heads").get<std::int64_t>();
    c.patch = j.at("patch_size").get<std::int64_t>();
    c.mlp_ratio = j.value("mlp_ratio", 4.0);
    c.norm_eps = j.value("layer_norm_eps", 1e-6);
    c.swiglu = j.value("use_swiglu_ffn", false);
  } catch (const nlohmann::json::exception& e) {
    fail("HF Dinov2 config: a key is missing or has a wrong type: {}", e.what());
  }
  return c;
}

namespace vit {

struct WebSslLayout {
  static constexpr bool flat_pos_embed = false;
  static std::string pos_embed() { return "embeddings.position_embeddings"; }
  static std::vector<std::string> unused(const VitConfig&) { return {}; }
  template <class Enc, class V>
  static void visit(Enc& e, V& v, std::string_view prefix) {
    v(join_name(prefix, "embeddings.cls_token"), e.cls_token);
    v(join_name(prefix, "embeddings.mask_token"), e.mask_token);
    v(join_name(prefix, "embeddings.patch_embeddings.projection.weight"), e.patch_embed.weight);
    v(join_name(prefix, "embeddings.patch_embeddings.projection.bias"), e.patch_embed.bias);
    for (std::size_t i = 0; i < e.blocks.size(); ++i) {
      auto& b = e.blocks[i];
      const std::string p = join_name(prefix, "encoder.layer." + std::to_string(i) + ".");
      b.norm1.visit_params(v, p + "norm1");
      b.attn.q.visit_params(v, p + "attention.attention.query");
      b.attn.k.visit_params(v, p + "attention.attention.key");
      b.attn.v.visit_params(v, p + "attention.attention.value");
      b.attn.proj.visit_params(v, p + "attention.output.dense");
      b.ls1.visit_params(v, p + "layer_scale1.lambda1");
      b.norm2.visit_params(v, p + "norm2");
      b.mlp.fc1.visit_params(v, p + (e.config.swiglu ? "mlp.weights_in" : "mlp.fc1"));
      b.mlp.fc2.visit_params(v, p + (e.config.swiglu ? "mlp.weights_out" : "mlp.fc2"));
      b.ls2.visit_params(v, p + "layer_scale2.lambda1");
    }
    e.norm.visit_params(v, join_name(prefix, "layernorm"));
  }
};

}  // namespace vit
}  // namespace irepa
