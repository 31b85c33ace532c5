// A user-written alignment policy, plugged into SiT: a Gram-matrix loss that aligns the
// token-to-token cosine similarities of the projected tokens with those of the targets (the
// spatial structure the iREPA paper finds matters), instead of aligning each token on its own.
//
// The example (1) checks the policy against the concept, (2) gradient-checks it alone and
// (3) inside a whole SiT with the public checker, and (4) trains a small SiT for a few steps
// on a fixed synthetic batch, printing the losses. Exit code 0 when every check passes and
// the loss went down.
//
//   irepa-example-custom-alignment [--steps N]

#include <irepa/irepa.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include "fail_safe.hpp"

namespace {

using namespace irepa;

/// loss = mean_b mean_{i,j} (G(zhat_b)_ij - G(z_b)_ij)^2, G(a) = n(a) n(a)^T with n the row-wise
/// L2 normalisation (eps 1e-12): a [T, Z] image's [T, T] cosine-similarity matrix.
struct GramLoss {
  double eps = 1e-12;

  template <class T>
  struct cache {
    double value = 0;
    Tensor<T> zn, norms;  // [B, T, Z] normalised predictions, [B T] their norms
    Tensor<T> diff;       // [B, T, T] G(zhat) - G(z)
  };

  template <class T>
  static void gram(const T* a, std::int64_t N, std::int64_t Z, T* g) {
    for (std::int64_t i = 0; i < N; ++i)
      for (std::int64_t j = 0; j < N; ++j) {
        T s = 0;
        for (std::int64_t k = 0; k < Z; ++k) s += a[i * Z + k] * a[j * Z + k];
        g[i * N + j] = s;
      }
  }

  template <class T>
  cache<T> forward(const CpuContext& ctx, ConstView<T> zhat, ConstView<T> z) const {
    IREPA_CHECK(zhat.rank() == 3, "GramLoss: predictions have shape {}, expected [B, T, Z]", zhat.shape().str());
    check_shape("GramLoss", "targets", z.shape(), zhat.shape());
    const std::int64_t B = zhat.size(0), N = zhat.size(1), Z = zhat.size(2);
    cache<T> c{0.0, Tensor<T>(zhat.shape()), Tensor<T>(Shape{B * N}), Tensor<T>(Shape{B, N, N})};
    Tensor<T> tn(z.shape()), tnorm(Shape{B * N}), gt(Shape{N, N});
    ops::l2_normalize_forward<T>(ctx, zhat, T(eps), c.zn.view(), c.norms.view());
    ops::l2_normalize_forward<T>(ctx, z, T(eps), tn.view(), tnorm.view());
    double sum = 0;
    for (std::int64_t b = 0; b < B; ++b) {
      T* d = c.diff.data() + b * N * N;
      gram(c.zn.data() + b * N * Z, N, Z, d);
      gram(tn.data() + b * N * Z, N, Z, gt.data());
      for (std::int64_t i = 0; i < N * N; ++i) {
        d[i] -= gt[i];
        sum += static_cast<double>(d[i]) * static_cast<double>(d[i]);
      }
    }
    c.value = sum / static_cast<double>(B * N * N);
    return c;
  }

  /// dzhat = dloss * d(loss)/d(zhat): through G (symmetric, so dn = 2 dG n) and the normalisation.
  template <class T>
  void backward(const CpuContext& ctx, const cache<T>& c, T dloss, TensorView<T> dzhat) const {
    const std::int64_t B = c.zn.size(0), N = c.zn.size(1), Z = c.zn.size(2);
    const T k = dloss * T(4) / static_cast<T>(B * N * N);  // d/dG of the mean square is 2 diff; dn = 2 dG n
    Tensor<T> dn(c.zn.shape());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < N; ++i)
        for (std::int64_t q = 0; q < Z; ++q) {
          T s = 0;
          for (std::int64_t j = 0; j < N; ++j) s += c.diff(b, i, j) * c.zn(b, j, q);
          dn(b, i, q) = k * s;
        }
    ops::l2_normalize_backward<T>(ctx, c.zn, c.norms, dn, T(eps), dzhat);
  }
};

// The contract: a loss that did not fit would fail here, with the concept's name in the message.
static_assert(AlignmentLoss<GramLoss>);

using Head = iREPAHead<Conv3x3, SpatialNorm, GramLoss>;

SiTConfig small_sit() {
  SiTConfig c;
  c.input_size = 8;
  c.in_channels = 4;
  c.num_classes = 10;
  c.encoder_depth = 2;
  c.z_dims = {16};
  c.depth = 3;
  c.hidden_size = 48;
  c.num_heads = 3;
  c.patch_size = 2;
  return c;
}

bool check_loss_alone() {
  CpuContext ctx;
  Philox rng(7);
  Tensor<double> zhat(Shape{2, 9, 5}), z(Shape{2, 9, 5}), dz(zhat.shape());
  rng.normal(zhat.view());
  rng.normal(z.view());
  GramLoss loss;
  const auto r = check::gradient_check(
      [&] {
        Tensor<double> v(Shape{1});
        v[0] = loss.forward<double>(ctx, zhat, z).value;
        return v;
      },
      [&](const std::vector<Tensor<double>>& g) { loss.backward<double>(ctx, loss.forward<double>(ctx, zhat, z), g[0][0], dz.view()); },
      {check::input("zhat", zhat.view(), dz.view())});
  std::printf("GramLoss alone: %s (worst relative error %.2e)\n", r.ok() ? "passed" : "FAILED", r.worst());
  if (!r.ok()) std::printf("%s", r.report().c_str());
  return r.ok();
}

bool check_inside_sit() {
  CpuContext ctx;
  SiT<Dynamic, DynamicPatch, Head, double> m(small_sit());
  Philox rng(11);
  rng.normal(m.params().values(), 0.0, 0.1);  // every layer non-zero
  const auto& c = m.config;
  Tensor<double> x(Shape{2, c.in_channels, c.input_size, c.input_size}), noise(x.shape()), t(Shape{2}),
      z(Shape{2, m.grid.tokens(), 16});
  Tensor<std::int64_t> y(Shape{2});
  rng.normal(x.view());
  rng.normal(noise.view());
  rng.uniform(t.view(), 0.1, 0.9);
  rng.normal(z.view());
  rng.randint(y.view(), 0, c.num_classes);
  const auto batch = upload_batch(ctx, HostBatch<double>{x, y, {z}}, m.label_rows());
  SiTObjective obj;
  obj.proj_coeff = 1.0;
  std::vector<check::GradTarget> targets;
  m.params().for_each([&](std::string_view name, TensorView<double> v, TensorView<double> g) {
    if (name.starts_with("projectors.") || name.starts_with("blocks.1.") || name.starts_with("x_embedder."))
      targets.push_back(check::param(std::string(name), v, g));
  });
  check::GradCheckOptions opt;
  opt.max_elements = 8;
  const auto r = check::gradient_check(
      [&] {
        Tensor<double> v(Shape{1});
        v[0] = objective_step(ctx, m, obj, batch, t, noise, 1.0, /*backward=*/false).losses(ctx).total;
        return v;
      },
      [&](const std::vector<Tensor<double>>& g) { objective_step(ctx, m, obj, batch, t, noise, /*grad_scale=*/g[0][0]); },
      targets, opt);
  std::printf("SiT with GramLoss, %zu parameter tensors: %s (worst relative error %.2e)\n", targets.size(),
              r.ok() ? "passed" : "FAILED", r.worst());
  if (!r.ok()) std::printf("%s", r.report().c_str());
  return r.ok();
}

/// A few steps of SGD with momentum on one fixed batch (fixed t and noise too) whose targets
/// are a fixed random projection of the clean latents' patches: the model fits it, so the
/// alignment and total losses fall.
bool train(int steps) {
  CpuContext ctx;
  SiT<Dynamic, DynamicPatch, Head, float> m(small_sit());
  m.init(2025);
  const auto& c = m.config;
  Philox rng(3);
  const std::int64_t B = 8, Tk = m.grid.tokens();
  Tensor<float> x(Shape{B, c.in_channels, c.input_size, c.input_size}), z(Shape{B, Tk, 16}), proj(Shape{16, 16});
  Tensor<std::int64_t> y(Shape{B});
  rng.normal(x.view());
  rng.normal(proj.view());
  rng.randint(y.view(), 0, c.num_classes);
  for (std::int64_t b = 0; b < B; ++b)  // target token = proj * (the 2x2x4 patch under it)
    for (std::int64_t tk = 0; tk < Tk; ++tk)
      for (std::int64_t o = 0; o < 16; ++o) {
        float s = 0;
        for (std::int64_t k = 0; k < 16; ++k) {
          const std::int64_t ch = k / 4, i = (k / 2) % 2, j = k % 2;
          s += proj(o, k) * x(b, ch, (tk / m.grid.w) * 2 + i, (tk % m.grid.w) * 2 + j);
        }
        z(b, tk, o) = s;
      }
  const auto batch = upload_batch(ctx, HostBatch<float>{x, y, {z}}, m.label_rows());
  SiTObjective obj;
  obj.proj_coeff = 1.0;
  Tensor<float> velocity(Shape{m.params().numel()});
  velocity.fill(0.f);
  const float lr = 0.05f, momentum = 0.9f;
  double first_align = 0, last_align = 0, first_total = 0, last_total = 0;
  Tensor<float> t(Shape{B}), noise(x.shape());
  rng.uniform(t.view(), 0.1f, 0.9f);
  rng.normal(noise.view());
  for (int s = 0; s < steps; ++s) {
    m.params().zero_grad();
    const auto st = objective_step(ctx, m, obj, batch, t, noise).losses(ctx);
    auto v = velocity.flat();
    v = v * momentum + m.params().grads().flat();  // one pass over the flat arena
    m.params().values().flat() -= v * lr;
    if (s == 0) first_align = st.alignment, first_total = st.total;
    last_align = st.alignment, last_total = st.total;
    if (s % 5 == 0 || s == steps - 1)
      std::printf("  step %3d  total %.4f  denoising %.4f  gram alignment %.5f\n", s, st.total, st.denoising, st.alignment);
  }
  const bool ok = last_align < first_align && last_total < first_total;
  std::printf("training: alignment %.5f -> %.5f, total %.4f -> %.4f: %s\n", first_align, last_align, first_total, last_total,
              ok ? "went down" : "DID NOT GO DOWN");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 40;
  if (argc == 3 && std::strcmp(argv[1], "--steps") == 0 && std::atoi(argv[2]) > 0) {
    steps = std::atoi(argv[2]);
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: %s [--steps N]\n", argv[0]);
    return 2;
  }
  try {
    bool ok = check_loss_alone();
    ok = check_inside_sit() && ok;
    ok = train(steps) && ok;
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
