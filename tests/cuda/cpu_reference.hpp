#pragma once
// The CPU double ops the CUDA tests compare with, behind plain functions: compiled by the host
// compiler in cpu_reference.cpp, so nvcc never instantiates the Eigen code of the CPU path.

#include <string>
#include <utility>
#include <vector>

#include "irepa/core/tensor.hpp"
#include "irepa/diffusion/interpolant.hpp"
#include "irepa/models/sam2_encoder.hpp"
#include "irepa/models/sam_encoder.hpp"
#include "irepa/models/vgg_encoder.hpp"
#include "irepa/models/vit/config.hpp"

namespace cpu_ref {

using T2 = irepa::Tensor<double>;

T2 gelu_tanh_forward(const T2& x);
T2 gelu_tanh_backward(const T2& x, const T2& dy);
T2 silu_forward(const T2& x);
T2 silu_backward(const T2& x, const T2& dy);
T2 swiglu_forward(const T2& x);
T2 swiglu_backward(const T2& x, const T2& dy);
/// RoPE on [B, T, H, hd] with JiT's axial table for a gh x gw grid (interleaved) or the same
/// table read half-split; returns {forward of x, backward of dy}.
std::pair<T2, T2> rope(const T2& x, const T2& dy, std::int64_t gh, std::int64_t gw, bool interleaved, T2& cos, T2& sin);
T2 modulate_forward(const T2& x, const T2& shift, const T2& scale);
void modulate_backward(const T2& x, const T2& scale, const T2& dy, T2& dx, T2& dshift, T2& dscale);
T2 gated_residual_forward(const T2& x, const T2& gate, const T2& y);
void gated_residual_backward(const T2& gate, const T2& y, const T2& dout, T2& dy, T2& dgate);
void layer_norm_forward(const T2& x, double eps, T2& y, T2& rstd);
T2 layer_norm_backward(const T2& y, const T2& rstd, const T2& dy);
void rms_norm_forward(const T2& x, const T2& w, double eps, T2& y, T2& r);
void rms_norm_backward(const T2& x, const T2& w, const T2& r, const T2& dy, T2& dx, T2& dw);  // dw accumulates
T2 linear_forward(const T2& x, const T2& w, const T2& b);
void linear_backward(const T2& x, const T2& w, const T2& dy, T2& dx, T2& dw, T2& db);  // dw, db accumulate
/// token mean / std of x [B, T, D] and dx from dmean, dstd; SpatialNorm (alpha, eps) of x.
void token_mean_std(const T2& x, const T2& dmean, const T2& dstd, T2& mean, T2& std, T2& dx);
T2 spatial_norm(const T2& x, double alpha, double eps);
/// Cosine similarity of rows (eps 1e-8) and its backward for ds; l2-normalisation of a and its backward for da_in.
void cosine(const T2& a, const T2& b, const T2& ds, T2& s, T2& da, T2& db);
void l2_normalize(const T2& a, const T2& dy, T2& y, T2& norm, T2& dx);
/// Same-padded conv forward and backward (dw, db accumulate). x [B, H, W, Ci], w [Co, Ci, k, k].
T2 conv2d_same_forward(const T2& x, const T2& w, const T2& b);
void conv2d_same_backward(const T2& x, const T2& w, const T2& dy, T2& dx, T2& dw, T2& db);
/// Label embedding (dtable accumulates) and timestep features.
T2 embedding_forward(const T2& table, const irepa::Tensor<std::int64_t>& idx);
void embedding_backward(const irepa::Tensor<std::int64_t>& idx, const T2& dy, T2& dtable);
T2 timestep_features_forward(const T2& t, std::int64_t dim);
T2 timestep_features_backward(const T2& t, const T2& dout);
/// Patch embedding forward and backward (dx assigned; dw, db accumulate). x [B, C, H, W], w [D, C, p, p].
T2 patchify_forward(const T2& x, const T2& w, const T2& b);
void patchify_backward(const T2& x, const T2& w, const T2& dy, T2& dx, T2& dw, T2& db);
/// The whole-tensor helpers: unpatchify (tokens [B, h w, p p C] -> image and back), adaLN's
/// split / merge of [B, k D], the broadcast add of a row.
T2 unpatchify(const T2& src, std::int64_t C, std::int64_t p, std::int64_t gh, std::int64_t gw, bool inverse, const irepa::Shape& out);
T2 split_chunks(const T2& m, std::int64_t k);
T2 merge_chunks(const T2& c);
T2 add_broadcast(const T2& acc, const T2& row);
/// Attention forward (out) and backward (dqkv) from qkv [B, N, 3D] and dout [B, N, D].
void attention(const T2& qkv, std::int64_t heads, const T2& dout, T2& out, T2& dqkv);
/// The same with JiT's q/k RMSNorm (weights qw, kw [hd]; dqw, dkw accumulate) and RoPE (cos, sin
/// [T, hd/2], interleaved or half-split).
void attention_qk(const T2& qkv, std::int64_t heads, const T2& qw, const T2& kw, const T2& cos, const T2& sin, bool interleaved,
                  const T2& dout, T2& out, T2& dqkv, T2& dqw, T2& dkw);

/// The diffusion objectives' and samplers' ops (ops/cpu/diffusion.hpp), and the cosine
/// reduction and loss totals (ops/cpu/reduce.hpp), in double.
void sit_interpolate(const T2& x, const T2& noise, const T2& t, irepa::PathType path, T2& model_input, T2& target);
/// per_sample [B], dout, and the loss.
double mse_per_image(const T2& out, const T2& target, double grad_scale, T2& per_sample, T2& dout);
void jit_interpolate(const T2& x, const T2& noise, const T2& t, double t_eps, T2& z, T2& target_v);
double jit_velocity_mse(const T2& out, const T2& z, const T2& target_v, const T2& t, double t_eps, double grad_scale, T2& v_pred,
                        T2& dout);
T2 lognormal_time(const T2& n, irepa::PathType path);
T2 logit_normal_time(const T2& n, double P_mean, double P_std);
T2 euler_update(const T2& x, const T2& d, double h);
T2 heun_update(const T2& x, const T2& d1, const T2& d2, double h, bool half_each);
T2 cfg_combine(const T2& d, double scale);
T2 sde_drift(const T2& v, const T2& x, double r, double var, double w);
T2 sde_step(const T2& x, const T2& d, const T2& eps, double dt, double w);
T2 velocity_from_x(const T2& x_pred, const T2& z, double k);
double row_mean(const T2& s, double factor);
/// [total, denoising, alignment, per encoder] with denoising and the per-encoder losses given.
T2 loss_totals(const T2& scalars, double coeff);

/// AdamW (lr, weight decay on the first n0 values only) with EMAs 0.999 and 0.9 fused, over
/// the given gradients, each step clipped to norm 1: the arena's values, EMAs and exp_avg_sq after.
struct AdamWRun {
  T2 values, ema0, ema1, exp_avg_sq;
  std::vector<double> clip;  // the clip factor of each step
};
AdamWRun adamw_steps(const T2& p0, const std::vector<T2>& grads, std::int64_t n0, double lr, double weight_decay);

/// The encoders' forward-only ops: exact GELU, QuickGELU, a LayerNorm's affine part, a
/// LayerScale residual (gamma empty: plain add), the class-token blend, F.interpolate's resize
/// (bicubic when `bicubic`, else bilinear) and the per-channel normalisation.
T2 gelu_forward(const T2& x);
T2 quick_gelu_forward(const T2& x);
T2 scale_shift_rows(const T2& x, const T2& w, const T2& b);
T2 add_scaled_rows(const T2& acc, const T2& gamma, const T2& x);
T2 blend_first_token(const T2& x, std::int64_t start, std::int64_t n, double a, double keep);
T2 interpolate(const T2& x, std::int64_t out_h, std::int64_t out_w, bool bicubic, bool antialias);
T2 normalize_channels(const T2& x, double divisor, const std::vector<double>& mean, const std::vector<double>& std);
/// ReLU and its backward; softmax cross-entropy per row (loss) and scale (softmax - onehot) (dz).
T2 relu_forward(const T2& x);
T2 relu_backward(const T2& x, const T2& dy);
T2 channels_last(const T2& x);
/// The ViT / VGG encoder of cfg loaded from a checkpoint at path, run on the CPU in double:
/// uint8-valued images [B, 3, R, R] -> tokens [B, T, D].
T2 vit_encode(const irepa::VitConfig& cfg, const std::string& path, const T2& images);
T2 vgg_encode(const irepa::VggConfig& cfg, const std::string& path, const T2& images);
T2 sam_encode(const irepa::SamConfig& cfg, const std::string& path, const T2& images);
T2 sam2_encode(const irepa::Sam2Config& cfg, const std::string& path, const T2& images);
/// SAM's and SAM2's ops: windows of a channels-last grid and back, attention inside them (rel_h,
/// rel_w empty: none; stride: pooled queries), and the strided columns of SAM2's patch embedding.
T2 window_partition(const T2& x, std::int64_t ws);
T2 window_merge(const T2& w, const irepa::Shape& out);
T2 window_attention(const T2& qkv, std::int64_t heads, std::int64_t ws, std::int64_t stride, const T2& rel_h, const T2& rel_w);
T2 im2col(const T2& x, std::int64_t k, std::int64_t stride, std::int64_t pad);
/// The HOG encoder by name on the CPU (float32, as it computes): images [B, C, H, W] in 0..255.
irepa::Tensor<float> hog_encode(const std::string& name, std::int64_t resolution, const irepa::Tensor<float>& images);
T2 max_pool_channels_last(const T2& x, std::int64_t s);
void softmax_cross_entropy(const T2& z, const irepa::Tensor<std::int64_t>& y, double scale, T2& loss, T2& dz);
/// The metric classifier (float, CPU) fitted on x [N, in], y [N]: its epoch losses and the
/// arena's values after the fit, for the GPU fit to be compared with.
struct ClassifierFit {
  std::vector<double> losses;
  irepa::Tensor<float> values;
};
ClassifierFit classifier_fit(const irepa::Tensor<float>& x, const irepa::Tensor<std::int64_t>& y, std::int64_t classes,
                             std::int64_t hidden, int epochs, std::int64_t batch, std::uint64_t seed);

}  // namespace cpu_ref
