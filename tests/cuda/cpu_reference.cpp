#include "cpu_reference.hpp"

#include "irepa/ops/tensor_ops.hpp"

#include <cmath>

#include "irepa/align/normalizers.hpp"
#include "irepa/metrics/classifier.hpp"
#include "irepa/models/hog.hpp"
#include "irepa/models/sam2_encoder.hpp"
#include "irepa/models/sam_encoder.hpp"
#include "irepa/models/vgg_encoder.hpp"
#include "irepa/models/vit_encoder.hpp"
#include "irepa/ops/activation.hpp"
#include "irepa/ops/reduce.hpp"
#include "irepa/ops/attention.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/diffusion.hpp"
#include "irepa/ops/embedding.hpp"
#include "irepa/ops/linear.hpp"
#include "irepa/ops/modulate.hpp"
#include "irepa/ops/norm.hpp"
#include "irepa/ops/pool.hpp"
#include "irepa/ops/resize.hpp"
#include "irepa/ops/rope.hpp"
#include "irepa/ops/window.hpp"
#include "irepa/train/optim.hpp"

namespace cpu_ref {

using namespace irepa;

namespace {
const CpuContext& cpu() {
  static const CpuContext c(2);
  return c;
}
}  // namespace

T2 gelu_tanh_forward(const T2& x) {
  T2 y(x.shape());
  ops::gelu_tanh_forward<double>(cpu(), x, y.view());
  return y;
}
T2 gelu_tanh_backward(const T2& x, const T2& dy) {
  T2 dx(x.shape());
  ops::gelu_tanh_backward<double>(cpu(), x, dy, dx.view());
  return dx;
}
T2 silu_forward(const T2& x) {
  T2 y(x.shape());
  ops::silu_forward<double>(cpu(), x, y.view());
  return y;
}
T2 silu_backward(const T2& x, const T2& dy) {
  T2 dx(x.shape());
  ops::silu_backward<double>(cpu(), x, dy, dx.view());
  return dx;
}
T2 swiglu_forward(const T2& x) {
  Shape s = x.shape();
  s[-1] /= 2;
  T2 y(s);
  ops::swiglu_forward<double>(cpu(), x, y.view());
  return y;
}
T2 swiglu_backward(const T2& x, const T2& dy) {
  T2 dx(x.shape());
  ops::swiglu_backward<double>(cpu(), x, dy, dx.view());
  return dx;
}
std::pair<T2, T2> rope(const T2& x, const T2& dy, std::int64_t gh, std::int64_t gw, bool interleaved, T2& cos, T2& sin) {
  auto [c, s] = ops::rope_table_axial_2d<double>(gh, gw, x.size(3));
  cos = std::move(c), sin = std::move(s);
  const auto mode = interleaved ? ops::RopeMode::Interleaved : ops::RopeMode::HalfSplit;
  T2 y(x.shape()), dx(x.shape());
  ops::rope_forward<double>(cpu(), x, cos, sin, mode, y.view());
  ops::rope_backward<double>(cpu(), cos, sin, mode, dy, dx.view());
  return {std::move(y), std::move(dx)};
}
T2 modulate_forward(const T2& x, const T2& shift, const T2& scale) {
  T2 y(x.shape());
  ops::modulate_forward<double>(cpu(), x, shift, scale, y.view());
  return y;
}
void modulate_backward(const T2& x, const T2& scale, const T2& dy, T2& dx, T2& dshift, T2& dscale) {
  ops::modulate_backward<double>(cpu(), x, scale, dy, dx.view(), dshift.view(), dscale.view());
}
T2 gated_residual_forward(const T2& x, const T2& gate, const T2& y) {
  T2 out(x.shape());
  ops::gated_residual_forward<double>(cpu(), x, gate, y, out.view());
  return out;
}
void gated_residual_backward(const T2& gate, const T2& y, const T2& dout, T2& dy, T2& dgate) {
  ops::gated_residual_backward<double>(cpu(), gate, y, dout, dy.view(), dgate.view());
}
void layer_norm_forward(const T2& x, double eps, T2& y, T2& rstd) { ops::layer_norm_forward<double>(cpu(), x, eps, y.view(), rstd.view()); }
T2 layer_norm_backward(const T2& y, const T2& rstd, const T2& dy) {
  T2 dx(y.shape());
  ops::layer_norm_backward<double>(cpu(), y, rstd, dy, dx.view());
  return dx;
}
void rms_norm_forward(const T2& x, const T2& w, double eps, T2& y, T2& r) { ops::rms_norm_forward<double>(cpu(), x, w, eps, y.view(), r.view()); }
void rms_norm_backward(const T2& x, const T2& w, const T2& r, const T2& dy, T2& dx, T2& dw) {
  ops::rms_norm_backward<double>(cpu(), x, w, r, dy, dx.view(), dw.view());
}
T2 linear_forward(const T2& x, const T2& w, const T2& b) {
  Shape s = x.shape();
  s[-1] = w.size(0);
  T2 y(s);
  ops::linear_forward<double>(cpu(), x, w, b, y.view());
  return y;
}
void linear_backward(const T2& x, const T2& w, const T2& dy, T2& dx, T2& dw, T2& db) {
  ops::linear_backward<double>(cpu(), x, w, dy, dx.view(), dw.view(), db.view());
}

void token_mean_std(const T2& x, const T2& dmean, const T2& dstd, T2& mean, T2& std, T2& dx) {
  ops::token_mean_std_forward<double>(cpu(), x, mean.view(), std.view());
  ops::token_mean_std_backward<double>(cpu(), x, mean, std, dmean, dstd, dx.view());
}
T2 spatial_norm(const T2& x, double alpha, double eps) {
  T2 out(x.shape());
  SpatialNorm{alpha, eps}.apply<double>(cpu(), x, out.view());
  return out;
}
void cosine(const T2& a, const T2& b, const T2& ds, T2& s, T2& da, T2& db) {
  const auto c = ops::cosine_similarity_forward<double>(cpu(), a, b, 1e-8, s.view());
  ops::cosine_similarity_backward<double>(cpu(), c, ds, 1e-8, da.view(), db.view());
}
void l2_normalize(const T2& a, const T2& dy, T2& y, T2& norm, T2& dx) {
  ops::l2_normalize_forward<double>(cpu(), a, 1e-12, y.view(), norm.view());
  ops::l2_normalize_backward<double>(cpu(), y, norm, dy, 1e-12, dx.view());
}
T2 conv2d_same_forward(const T2& x, const T2& w, const T2& b) {
  T2 y(Shape{x.size(0), x.size(1), x.size(2), w.size(0)});
  ops::conv2d_same_forward<double>(cpu(), x, w, b, y.view());
  return y;
}
void conv2d_same_backward(const T2& x, const T2& w, const T2& dy, T2& dx, T2& dw, T2& db) {
  ops::conv2d_same_backward<double>(cpu(), x, w, dy, dx.view(), dw.view(), db.view());
}
T2 embedding_forward(const T2& table, const Tensor<std::int64_t>& idx) {
  T2 out(Shape{idx.size(0), table.size(1)});
  ops::embedding_forward<double>(cpu(), table, idx, out.view());
  return out;
}
void embedding_backward(const Tensor<std::int64_t>& idx, const T2& dy, T2& dtable) {
  ops::embedding_backward<double>(cpu(), idx, dy, dtable.view());
}
T2 timestep_features_forward(const T2& t, std::int64_t dim) {
  T2 out(Shape{t.size(0), dim});
  ops::timestep_features_forward<double>(cpu(), t, dim, out.view());
  return out;
}
T2 timestep_features_backward(const T2& t, const T2& dout) {
  T2 dt(t.shape());
  ops::timestep_features_backward<double>(cpu(), t, dout, dt.view());
  return dt;
}
T2 patchify_forward(const T2& x, const T2& w, const T2& b) {
  const std::int64_t p = w.size(2);
  T2 y(Shape{x.size(0), (x.size(2) / p) * (x.size(3) / p), w.size(0)});
  ops::patchify_forward<double>(cpu(), x, w, b, y.view());
  return y;
}
void patchify_backward(const T2& x, const T2& w, const T2& dy, T2& dx, T2& dw, T2& db) {
  ops::patchify_backward<double>(cpu(), x, w, dy, dx.view(), dw.view(), db.view());
}
T2 unpatchify(const T2& src, std::int64_t C, std::int64_t p, std::int64_t gh, std::int64_t gw, bool inverse, const Shape& out) {
  T2 dst(out);
  ops::unpatchify<double>(cpu(), src, dst.view(), C, p, TokenGrid{gh, gw}, inverse);
  return dst;
}
T2 split_chunks(const T2& m, std::int64_t k) {
  T2 out(Shape{k, m.size(0), m.size(1) / k});
  ops::split_chunks<double>(cpu(), m, out.view());
  return out;
}
T2 merge_chunks(const T2& c) {
  T2 out(Shape{c.size(1), c.size(0) * c.size(2)});
  ops::merge_chunks<double>(cpu(), c, out.view());
  return out;
}
T2 add_broadcast(const T2& acc, const T2& row) {
  T2 out = acc.clone();
  ops::add_broadcast<double>(cpu(), out.view(), row);
  return out;
}
void attention(const T2& qkv, std::int64_t heads, const T2& dout, T2& out, T2& dqkv) {
  ops::AttentionSpec<double> spec;
  spec.heads = heads;
  const auto cache = ops::attention_forward<double>(cpu(), qkv, spec, out.view());
  ops::attention_backward<double>(cpu(), spec, cache, dout, dqkv.view());
}

void attention_qk(const T2& qkv, std::int64_t heads, const T2& qw, const T2& kw, const T2& cos, const T2& sin, bool interleaved,
                  const T2& dout, T2& out, T2& dqkv, T2& dqw, T2& dkw) {
  ops::AttentionSpec<double> spec;
  spec.heads = heads, spec.q_norm_weight = qw, spec.k_norm_weight = kw, spec.rope_cos = cos, spec.rope_sin = sin;
  spec.rope_mode = interleaved ? ops::RopeMode::Interleaved : ops::RopeMode::HalfSplit;
  const auto cache = ops::attention_forward<double>(cpu(), qkv, spec, out.view());
  ops::attention_backward<double>(cpu(), spec, cache, dout, dqkv.view(), dqw.view(), dkw.view());
}

namespace {
struct TwoParams {
  Param<double> a, b;
  template <class V>
  void visit_params(V&& v, std::string_view prefix) {
    v(join_name(prefix, "a.weight"), a);
    v(join_name(prefix, "b.bias"), b);
  }
};
}  // namespace

AdamWRun adamw_steps(const T2& p0, const std::vector<T2>& grads, std::int64_t n0, double lr, double weight_decay) {
  const std::int64_t n = p0.numel();
  TwoParams model{Param<double>(Shape{n0}), Param<double>(Shape{n - n0})};
  ParamArena<double> arena(model);
  std::copy_n(p0.data(), n, arena.values().data());
  AdamWOptions opt;
  opt.lr = lr, opt.weight_decay = weight_decay;
  opt.decay = [](std::string_view name, const Shape&) { return name.ends_with("weight"); };
  AdamW<double> adamw(arena, opt);
  Ema<double> e0(arena, 0.999), e1(arena, 0.9);
  AdamWRun out;
  for (std::size_t s = 0; s < grads.size(); ++s) {
    std::copy_n(grads[s].data(), n, arena.grads().data());
    const double clip = clip_coefficient(grad_norm(cpu(), arena), 1.0);
    out.clip.push_back(clip);
    adamw.step(cpu(), arena, lr, clip, {&e0, &e1}, static_cast<std::int64_t>(s) + 1);
  }
  auto copy = [n](const double* src) {
    T2 t(Shape{n});
    std::copy_n(src, n, t.data());
    return t;
  };
  out.values = copy(arena.values().data());
  out.ema0 = copy(e0.values().data());
  out.ema1 = copy(e1.values().data());
  out.exp_avg_sq = copy(adamw.exp_avg_sq().data());
  return out;
}

void sit_interpolate(const T2& x, const T2& noise, const T2& t, PathType path, T2& model_input, T2& target) {
  model_input = T2(x.shape()), target = T2(x.shape());
  ops::sit_interpolate<double>(cpu(), x, noise, t, path, model_input.view(), target.view());
}
double mse_per_image(const T2& out, const T2& target, double grad_scale, T2& per_sample, T2& dout) {
  per_sample = T2(Shape{target.size(0)}), dout = T2(target.shape());
  T2 loss(Shape{1});
  ops::mse_per_image<double>(cpu(), out, target, grad_scale, per_sample.view(), dout.view(), loss.view());
  return loss[0];
}
void jit_interpolate(const T2& x, const T2& noise, const T2& t, double t_eps, T2& z, T2& target_v) {
  z = T2(x.shape()), target_v = T2(x.shape());
  ops::jit_interpolate<double>(cpu(), x, noise, t, t_eps, z.view(), target_v.view());
}
double jit_velocity_mse(const T2& out, const T2& z, const T2& target_v, const T2& t, double t_eps, double grad_scale, T2& v_pred,
                        T2& dout) {
  v_pred = T2(z.shape()), dout = T2(z.shape());
  T2 loss(Shape{1});
  ops::jit_velocity_mse<double>(cpu(), out, z, target_v, t, t_eps, grad_scale, v_pred.view(), dout.view(), loss.view());
  return loss[0];
}
T2 lognormal_time(const T2& n, PathType path) {
  T2 t(n.shape());
  ops::lognormal_time<double>(cpu(), n, path, t.view());
  return t;
}
T2 logit_normal_time(const T2& n, double P_mean, double P_std) {
  T2 t(n.shape());
  ops::logit_normal_time<double>(cpu(), n, P_mean, P_std, t.view());
  return t;
}
T2 euler_update(const T2& x, const T2& d, double h) {
  T2 out(x.shape());
  ops::euler_update<double>(cpu(), x, d, h, out.view());
  return out;
}
T2 heun_update(const T2& x, const T2& d1, const T2& d2, double h, bool half_each) {
  T2 out(x.shape());
  ops::heun_update<double>(cpu(), x, d1, d2, h, half_each ? ops::HeunForm::HalfEach : ops::HeunForm::HalfSum, out.view());
  return out;
}
T2 cfg_combine(const T2& d, double scale) {
  Shape s = d.shape();
  s[0] /= 2;
  T2 out(s);
  ops::cfg_combine<double>(cpu(), d, scale, out.view());
  return out;
}
T2 sde_drift(const T2& v, const T2& x, double r, double var, double w) {
  T2 out(v.shape());
  ops::sde_drift<double>(cpu(), v, x, r, var, w, out.view());
  return out;
}
T2 sde_step(const T2& x, const T2& d, const T2& eps, double dt, double w) {
  T2 out = x.clone();
  ops::sde_step<double>(cpu(), out.view(), d, eps, dt, w);
  return out;
}
T2 velocity_from_x(const T2& x_pred, const T2& z, double k) {
  T2 v(z.shape());
  ops::velocity_from_x<double>(cpu(), x_pred, z, k, v.view());
  return v;
}
double row_mean(const T2& s, double factor) {
  T2 out(Shape{1});
  ops::row_mean<double>(cpu(), s, factor, out.view());
  return out[0];
}
T2 loss_totals(const T2& scalars, double coeff) {
  T2 s = scalars.clone();
  ops::loss_totals(cpu(), s.view(), s.numel() - 3, coeff);
  return s;
}

T2 gelu_forward(const T2& x) {
  T2 y(x.shape());
  ops::gelu_forward<double>(cpu(), x, y.view());
  return y;
}
T2 quick_gelu_forward(const T2& x) {
  T2 y(x.shape());
  ops::quick_gelu_forward<double>(cpu(), x, y.view());
  return y;
}
T2 scale_shift_rows(const T2& x, const T2& w, const T2& b) {
  T2 y = T2::copy_of(x.cview());
  ops::scale_shift_rows<double>(cpu(), y.view(), w, b);
  return y;
}
T2 add_scaled_rows(const T2& acc, const T2& gamma, const T2& x) {
  T2 y = T2::copy_of(acc.cview());
  ops::add_scaled_rows<double>(cpu(), y.view(), gamma.numel() > 0 && gamma.shape().rank() > 0 ? ConstView<double>(gamma) : ConstView<double>{}, x);
  return y;
}
T2 blend_first_token(const T2& x, std::int64_t start, std::int64_t n, double a, double keep) {
  T2 y(Shape{x.size(0), n, x.size(2)});
  ops::blend_first_token<double>(cpu(), x, start, a, keep, y.view());
  return y;
}
T2 interpolate(const T2& x, std::int64_t out_h, std::int64_t out_w, bool bicubic, bool antialias) {
  return ops::interpolate<double>(cpu(), x, out_h, out_w, bicubic ? ops::ResizeMode::Bicubic : ops::ResizeMode::Bilinear, antialias);
}
T2 normalize_channels(const T2& x, double divisor, const std::vector<double>& mean, const std::vector<double>& std) {
  ops::ChannelNorm n{.divisor = divisor};
  for (std::size_t c = 0; c < mean.size() && c < 4; ++c) n.mean[c] = mean[c], n.std[c] = std[c];
  T2 y(x.shape());
  ops::normalize_channels<double>(cpu(), x, n, y.view());
  return y;
}

T2 relu_forward(const T2& x) {
  T2 y(x.shape());
  ops::relu_forward<double>(cpu(), x, y.view());
  return y;
}
T2 relu_backward(const T2& x, const T2& dy) {
  T2 dx(x.shape());
  ops::relu_backward<double>(cpu(), x, dy, dx.view());
  return dx;
}
T2 channels_last(const T2& x) {
  T2 y(Shape{x.size(0), x.size(2), x.size(3), x.size(1)});
  ops::channels_last<double>(cpu(), x, y.view());
  return y;
}
T2 vit_encode(const VitConfig& cfg, const std::string& path, const T2& images) {
  VitEncoder<double> e(cfg);
  e.load(io::SafeTensorsFile(path));
  return e.encode(cpu(), images);
}
namespace {
/// A double encoder of cfg read from path, run on the CPU.
template <class Enc, class Config>
T2 load_and_encode(const Config& cfg, const std::string& path, const T2& images) {
  Enc e(cfg);
  e.load(io::SafeTensorsFile(path));
  return e.encode(cpu(), images);
}
}  // namespace

T2 vgg_encode(const VggConfig& cfg, const std::string& path, const T2& images) {
  return load_and_encode<VggEncoder<double>>(cfg, path, images);
}
T2 sam_encode(const SamConfig& cfg, const std::string& path, const T2& images) {
  return load_and_encode<SamEncoder<double>>(cfg, path, images);
}
T2 sam2_encode(const Sam2Config& cfg, const std::string& path, const T2& images) {
  return load_and_encode<Sam2Encoder<double>>(cfg, path, images);
}
T2 window_partition(const T2& x, std::int64_t ws) {
  const std::int64_t per = ops::detail::windows_per_side(x.size(1), ws);
  T2 out(Shape{x.size(0) * per * per, ws * ws, x.size(3)});
  ops::window_partition<double>(cpu(), x, ws, out.view());
  return out;
}
T2 window_merge(const T2& w, const Shape& out_shape) {
  T2 out(out_shape);
  ops::window_merge<double>(cpu(), w, out.view());
  return out;
}
T2 window_attention(const T2& qkv, std::int64_t heads, std::int64_t ws, std::int64_t stride, const T2& rel_h, const T2& rel_w) {
  const std::int64_t q = ws / stride;
  T2 out(Shape{qkv.size(0), q * q, qkv.size(2) / 3});
  ops::window_attention_forward<double>(cpu(), qkv, ops::WindowAttentionSpec<double>{heads, ws, stride, rel_h, rel_w}, out.view());
  return out;
}
T2 im2col(const T2& x, std::int64_t k, std::int64_t stride, std::int64_t pad) {
  const std::int64_t gh = ops::detail::conv_out_size(x.size(2), k, stride, pad), gw = ops::detail::conv_out_size(x.size(3), k, stride, pad);
  T2 cols(Shape{x.size(0), gh * gw, x.size(1) * k * k});
  ops::im2col<double>(cpu(), x, k, stride, pad, cols.view());
  return cols;
}
Tensor<float> hog_encode(const std::string& name, std::int64_t resolution, const Tensor<float>& images) {
  return HogEncoder(name, resolution).encode(cpu(), images);
}
T2 max_pool_channels_last(const T2& x, std::int64_t s) { return ops::max_pool_channels_last<double>(cpu(), x, s); }
void softmax_cross_entropy(const T2& z, const Tensor<std::int64_t>& y, double scale, T2& loss, T2& dz) {
  loss = T2(Shape{z.size(0)});
  dz = T2(z.shape());
  ops::softmax_cross_entropy<double>(cpu(), z, y, loss.view(), dz.view(), scale);
}
ClassifierFit classifier_fit(const Tensor<float>& x, const Tensor<std::int64_t>& y, std::int64_t classes, std::int64_t hidden,
                             int epochs, std::int64_t batch, std::uint64_t seed) {
  metrics::MlpClassifier<float> clf(x.size(1), classes, {.hidden = hidden, .epochs = epochs, .batch_size = batch, .seed = seed});
  ClassifierFit out;
  out.losses = clf.fit(cpu(), x, y);
  out.values = Tensor<float>::copy_of(clf.params().values());
  return out;
}

}  // namespace cpu_ref
