#pragma once
// Frozen target encoders chosen by the reference's names at run time (--enc-type): a small
// type-erased handle so that the trainer can hold several of different kinds. Each maps clean
// images [B, C, H, W] in 0..255 to patch tokens [B, T, D] without gradient.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "irepa/models/hog.hpp"

namespace irepa {

struct TargetEncoder {
  std::string name;          // the reference's name, e.g. hog-x-g16_d128
  std::int64_t tokens = 0;   // T (a square grid)
  std::int64_t dim = 0;      // D
  std::function<Tensor<float>(const CpuContext&, ConstView<float>)> encode;  // [B, C, H, W] 0..255 -> [B, T, D]
};

/// One encoder by name, working at `resolution` (the images' size for the weight-free HOG).
inline TargetEncoder make_target_encoder(std::string_view name, std::int64_t resolution) {
  if (name.starts_with("hog-")) {
    auto enc = std::make_shared<HogEncoder>(name, resolution);
    return {enc->name(), enc->tokens(), enc->dim(),
            [enc](const CpuContext& ctx, ConstView<float> images) { return enc->encode(ctx, images); }};
  }
  fail("target encoder '{}' is not available in this build; implemented: hog-<arch>-g<grid>_d<dim>[_ppc<n>][_cb<n>] "
       "(the ViT families load from safetensors once their issue lands)",
       name);
}

/// A comma-separated list ("hog-x-g8_d32,hog-x-g8_d128"); an empty string gives none.
inline std::vector<TargetEncoder> make_target_encoders(std::string_view names, std::int64_t resolution) {
  std::vector<TargetEncoder> out;
  std::size_t start = 0;
  while (start < names.size()) {
    const auto end = std::min(names.find(',', start), names.size());
    const auto one = names.substr(start, end - start);
    IREPA_CHECK(!one.empty(), "target encoders '{}': an empty name between commas", names);
    out.push_back(make_target_encoder(one, resolution));
    start = end + 1;
  }
  return out;
}

}  // namespace irepa
