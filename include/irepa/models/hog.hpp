#pragma once
// The weight-free HOG target encoder of the reference (REFERENCE.md section 6, `hog-x-g16_d128`):
// images in 0..255 -> bilinear resize to the working resolution -> grey 0.2126R + 0.7152G +
// 0.0722B over 255 -> HOG with scikit-image's semantics (central-difference gradients, zero on
// the border; unsigned orientation bins of 180/n degrees; 2x2-pixel cells averaging magnitudes;
// every 4x4-cell block L2-Hys normalised) -> each block vector L2-normalised -> bilinear resize of
// the [HB, WB, D] block map to the token grid -> [B, grid^2, D].
//
// The reference runs this in numpy/scikit-image (float32 grey and gradients, float64 magnitude,
// angle and block norms, cell sums accumulated in a C float) and then torch in float32; every
// step below keeps those precisions (the grey image is computed in double and rounded once, which
// matches the golden file bit for bit), so results agree to float rounding (golden <= 1e-5).
// The computation is an op (ops/hog.hpp) with a CPU and a CUDA backend; the encoder is
// weight-free, so it runs wherever its context is (on the model's device in the trainer).

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "irepa/core/context.hpp"
#include "irepa/core/error.hpp"
#include "irepa/core/tensor.hpp"
#include "irepa/ops/hog.hpp"

namespace irepa {

/// The sizes (ops::HogParams: resolution, grid, dim, pixels_per_cell, cells_per_block, and
/// what follows from them), checked, with the reference's name.
struct HogConfig : ops::HogParams {
  void validate() const {
    IREPA_CHECK(resolution > 0 && grid > 0 && pixels_per_cell > 0 && cells_per_block > 0,
                "HogConfig: resolution {}, grid {}, pixels per cell {} and cells per block {} must be positive", resolution, grid,
                pixels_per_cell, cells_per_block);
    const std::int64_t div = cells_per_block * cells_per_block;
    IREPA_CHECK(dim > 0 && dim % div == 0, "HogConfig: dim {} must be a positive multiple of cells_per_block^2 = {}", dim, div);
    IREPA_CHECK(blocks() >= 1, "HogConfig: resolution {} gives {} cells of {} pixels per side, fewer than a block of {} cells",
                resolution, cells(), pixels_per_cell, cells_per_block);
  }
  const ops::HogParams& params() const { return *this; }
  /// The reference's encoder name: hog-x-g16_d128 (ppc / cb parts only when not the default).
  std::string name() const {
    std::string s = fmt::format("hog-x-g{}_d{}", grid, dim);
    if (pixels_per_cell != 2) s += fmt::format("_ppc{}", pixels_per_cell);
    if (cells_per_block != 4) s += fmt::format("_cb{}", cells_per_block);
    return s;
  }
};

/// "hog-x-g16_d128[_ppcP][_cbC]" (or just its model part "g16_d128") at the given working
/// resolution. Unlike the reference, a part it does not know is an error rather than ignored.
inline HogConfig parse_hog_name(std::string_view name, std::int64_t resolution) {
  HogConfig c;
  c.resolution = resolution;
  std::string_view model = name;
  if (model.starts_with("hog-")) {
    const auto dash = model.find('-', 4);
    IREPA_CHECK(dash != std::string_view::npos, "HOG encoder '{}': expected hog-<arch>-<config>, e.g. hog-x-g16_d128", name);
    model = model.substr(dash + 1);
  }
  auto number = [&](std::string_view part, std::string_view digits) {
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    IREPA_CHECK(ec == std::errc() && p == digits.data() + digits.size() && !digits.empty(),
                "HOG encoder '{}': part '{}' is not a prefix followed by a whole number", name, part);
    return v;
  };
  std::size_t start = 0;
  while (start <= model.size()) {
    const auto end = std::min(model.find('_', start), model.size());
    const std::string_view part = model.substr(start, end - start);
    if (part.starts_with("ppc")) c.pixels_per_cell = number(part, part.substr(3));
    else if (part.starts_with("cb")) c.cells_per_block = number(part, part.substr(2));
    else if (part.starts_with("g")) c.grid = number(part, part.substr(1));
    else if (part.starts_with("d")) c.dim = number(part, part.substr(1));
    else fail("HOG encoder '{}': part '{}' is not known; expected g<grid>, d<dim>, ppc<pixels per cell>, cb<cells per block>", name, part);
    start = end + 1;
  }
  c.validate();
  return c;
}

/// The weight-free HOG encoder; encode runs on the context's device.
class HogEncoder {
 public:
  template <class D2>
  using On = HogEncoder;  // weight-free: the same object on every device

  explicit HogEncoder(HogConfig c) : c_(c) { c_.validate(); }
  /// From the reference's name, e.g. HogEncoder("hog-x-g16_d128", 256).
  HogEncoder(std::string_view name, std::int64_t resolution) : HogEncoder(parse_hog_name(name, resolution)) {}
  static HogEncoder from_host(const HogEncoder& h) { return h; }

  const HogConfig& config() const { return c_; }
  std::string name() const { return c_.name(); }
  std::int64_t dim() const { return c_.dim; }
  std::int64_t tokens() const { return c_.grid * c_.grid; }

  /// images [B, C, H, W], values 0..255, C = 3 (RGB) or 1 (grey, used as R = G = B)
  /// -> patch tokens [B, grid^2, dim], float32, on the context's device.
  template <class Ctx, class D = typename Ctx::device_type>
  Tensor<float, D> encode(const Ctx& ctx, std::type_identity_t<ConstView<float, D>> images) const {
    Tensor<float, D> out(Shape{images.rank() == 4 ? images.size(0) : 0, tokens(), c_.dim});  // [B, T, D]
    ops::hog_tokens(ctx, images, c_.params(), out.view());
    return out;
  }
  /// The same on the CPU, with the grey images [B, res, res] as well.
  Tensor<float> encode(const CpuContext& ctx, ConstView<float> images, Tensor<float>* gray) const {
    Tensor<float> out(Shape{images.rank() == 4 ? images.size(0) : 0, tokens(), c_.dim});
    if (gray) *gray = Tensor<float>(Shape{images.rank() == 4 ? images.size(0) : 0, c_.resolution, c_.resolution});
    ops::hog_tokens(ctx, images, c_.params(), out.view(), gray ? gray->data() : nullptr);
    return out;
  }

  /// HOG blocks of one grey [res, res] image, L2-Hys normalised: [HB, WB, D] with D ordered as
  /// scikit-image's (block row, block col, orientation).
  std::vector<float> blocks(const float* gray) const { return ops::detail::hog_blocks(c_.params(), gray); }

 private:
  HogConfig c_;
};

}  // namespace irepa
