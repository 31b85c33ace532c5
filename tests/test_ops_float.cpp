// Every op in float against the same op in double, forward and backward, on the same inputs:
// relative error per output <= 1e-5 (float keeps ~7 digits; these shapes sum at most a few
// hundred terms). The double path is the one the gradient checks and golden files pin down.

#include <map>

#include "irepa/ops/activation.hpp"
#include "irepa/ops/attention.hpp"
#include "irepa/ops/conv.hpp"
#include "irepa/ops/embedding.hpp"
#include "irepa/ops/linear.hpp"
#include "irepa/ops/modulate.hpp"
#include "irepa/ops/norm.hpp"
#include "irepa/ops/reduce.hpp"
#include "irepa/ops/rope.hpp"
#include "test_support.hpp"

using namespace irepa;

namespace {

/// Fresh random inputs by name, drawn once in double and handed out in either precision.
struct Inputs {
  std::map<std::string, Tensor<double>> master;
  const Tensor<double>& get(const std::string& name, const Shape& s) {
    auto it = master.find(name);
    if (it == master.end()) it = master.emplace(name, test::randn<double>(s)).first;
    return it->second;
  }
  template <class T>
  Tensor<T> as(const std::string& name, const Shape& s) {
    const auto& m = get(name, s);
    Tensor<T> t(s);
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<T>(m[i]);
    return t;
  }
};

template <class T>
Tensor<double> to_double(const Tensor<T>& t) {
  Tensor<double> d(t.shape());
  for (std::int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<double>(t[i]);
  return d;
}

using Results = std::map<std::string, Tensor<double>>;

inline void put(Results&) {}
template <class... Rest>
void put(Results& r, const char* name, Tensor<double>&& t, Rest&&... rest) {
  r.emplace(name, std::move(t));
  put(r, std::forward<Rest>(rest)...);
}
/// results("y", tensor, "dx", tensor, ...): named results (Tensors are move-only).
template <class... A>
Results results(A&&... a) {
  Results r;
  put(r, std::forward<A>(a)...);
  return r;
}

/// Runs op<float> and op<double> on the same inputs and compares every named result.
template <class Op>
void compare(const std::string& what, Op op) {
  Inputs in;
  CpuContext ctx(2);
  Results d = op.template operator()<double>(ctx, in);
  Results f = op.template operator()<float>(ctx, in);
  for (const auto& [name, ref] : d) {
    INFO(what << ": " << name);
    CHECK(test::rel_error(f.at(name), ref) < 1e-5);
  }
}

constexpr std::int64_t B = 3, N = 10, D = 12, H = 3, hd = 4, O = 7;

}  // namespace

TEST_CASE("float and double agree for every op", "[ops][float]") {
  compare("linear", []<class T>(CpuContext& ctx, Inputs& in) {
    auto x = in.as<T>("x", {B, N, D});
    auto w = in.as<T>("w", {O, D});
    auto b = in.as<T>("b", {O});
    auto dy = in.as<T>("dy", {B, N, O});
    Tensor<T> y(Shape{B, N, O}), dx(x.shape()), dw = Tensor<T>::zeros(w.shape()), db = Tensor<T>::zeros(b.shape());
    ops::linear_forward<T>(ctx, x, w, b, y.view());
    ops::linear_backward<T>(ctx, x, w, dy, dx.view(), dw.view(), db.view());
    return results("y", to_double(y), "dx", to_double(dx), "dw", to_double(dw), "db", to_double(db));
  });
  compare("conv3x3", []<class T>(CpuContext& ctx, Inputs& in) {
    auto x = in.as<T>("x", {B, 2, 5, D});
    auto w = in.as<T>("w", {O, D, 3, 3});
    auto b = in.as<T>("b", {O});
    auto dy = in.as<T>("dy", {B, 2, 5, O});
    Tensor<T> y(Shape{B, 2, 5, O}), dx(x.shape()), dw = Tensor<T>::zeros(w.shape()), db = Tensor<T>::zeros(b.shape());
    ops::conv2d_same_forward<T>(ctx, x, w, b, y.view());
    ops::conv2d_same_backward<T>(ctx, x, w, dy, dx.view(), dw.view(), db.view());
    return results("y", to_double(y), "dx", to_double(dx), "dw", to_double(dw), "db", to_double(db));
  });
  compare("patchify", []<class T>(CpuContext& ctx, Inputs& in) {
    auto x = in.as<T>("x", {B, 3, 4, 10});
    auto w = in.as<T>("w", {D, 3, 2, 2});
    auto b = in.as<T>("b", {D});
    auto dy = in.as<T>("dy", {B, N, D});
    Tensor<T> y(Shape{B, N, D}), dx(x.shape()), dw = Tensor<T>::zeros(w.shape()), db = Tensor<T>::zeros(b.shape());
    ops::patchify_forward<T>(ctx, x, w, b, y.view());
    ops::patchify_backward<T>(ctx, x, w, dy, dx.view(), dw.view(), db.view());
    return results("y", to_double(y), "dx", to_double(dx), "dw", to_double(dw), "db", to_double(db));
  });
  compare("layer_norm + rms_norm", []<class T>(CpuContext& ctx, Inputs& in) {
    auto x = in.as<T>("x", {B, N, D});
    auto w = in.as<T>("w", {D});
    auto dy = in.as<T>("dy", {B, N, D});
    Tensor<T> y(x.shape()), r(Shape{B * N}), dx(x.shape()), y2(x.shape()), r2(Shape{B * N}), dx2(x.shape());
    Tensor<T> dw = Tensor<T>::zeros(w.shape());
    ops::layer_norm_forward<T>(ctx, x, T(1e-6), y.view(), r.view());
    ops::layer_norm_backward<T>(ctx, y, r, dy, dx.view());
    ops::rms_norm_forward<T>(ctx, x, w, T(1e-6), y2.view(), r2.view());
    ops::rms_norm_backward<T>(ctx, x, w, r2, dy, dx2.view(), dw.view());
    return results("ln y", to_double(y), "ln dx", to_double(dx), "rms y", to_double(y2), "rms dx", to_double(dx2),
                   "rms dw", to_double(dw));
  });
  compare("modulate", []<class T>(CpuContext& ctx, Inputs& in) {
    auto x = in.as<T>("x", {B, N, D});
    auto sh = in.as<T>("shift", {B, D});
    auto sc = in.as<T>("scale", {B, D});
    auto dy = in.as<T>("dy", {B, N, D});
    Tensor<T> y(x.shape()), dx(x.shape()), dsh(sh.shape()), dsc(sc.shape());
    ops::modulate_forward<T>(ctx, x, sh, sc, y.view());
    ops::modulate_backward<T>(ctx, x, sc, dy, dx.view(), dsh.view(), dsc.view());
    return results("y", to_double(y), "dx", to_double(dx), "dshift", to_double(dsh), "dscale", to_double(dsc));
  });
  compare("activations", []<class T>(CpuContext& ctx, Inputs& in) {
    auto x = in.as<T>("x", {B, N, 2 * D});
    auto dy = in.as<T>("dy", {B, N, 2 * D});
    auto dyh = in.as<T>("dyh", {B, N, D});
    Results r;
    Tensor<T> y(x.shape()), dx(x.shape()), ys(Shape{B, N, D});
    ops::gelu_tanh_forward<T>(ctx, x, y.view());
    ops::gelu_tanh_backward<T>(ctx, x, dy, dx.view());
    r.emplace("gelu y", to_double(y));
    r.emplace("gelu dx", to_double(dx));
    ops::silu_forward<T>(ctx, x, y.view());
    ops::silu_backward<T>(ctx, x, dy, dx.view());
    r.emplace("silu y", to_double(y));
    r.emplace("silu dx", to_double(dx));
    ops::swiglu_forward<T>(ctx, x, ys.view());
    ops::swiglu_backward<T>(ctx, x, dyh, dx.view());
    r.emplace("swiglu y", to_double(ys));
    r.emplace("swiglu dx", to_double(dx));
    return r;
  });
  compare("attention with q/k norm and RoPE", []<class T>(CpuContext& ctx, Inputs& in) {
    auto qkv = in.as<T>("qkv", {B, N, 3 * D});
    auto qw = in.as<T>("qw", {hd});
    auto kw = in.as<T>("kw", {hd});
    auto dout = in.as<T>("dout", {B, N, D});
    auto [c, s] = ops::rope_table_axial_2d<T>(2, 5, hd);
    ops::AttentionSpec<T> spec;
    spec.heads = H;
    spec.q_norm_weight = qw.view();
    spec.k_norm_weight = kw.view();
    spec.rope_cos = c.view();
    spec.rope_sin = s.view();
    Tensor<T> out(Shape{B, N, D}), dqkv(qkv.shape()), dqw = Tensor<T>::zeros({hd}), dkw = Tensor<T>::zeros({hd});
    auto cache = ops::attention_forward<T>(ctx, qkv, spec, out.view());
    ops::attention_backward<T>(ctx, spec, cache, dout, dqkv.view(), dqw.view(), dkw.view());
    return results("out", to_double(out), "dqkv", to_double(dqkv), "dq_norm", to_double(dqw), "dk_norm", to_double(dkw));
  });
  compare("embeddings and timestep features", []<class T>(CpuContext& ctx, Inputs& in) {
    auto table = in.as<T>("table", {11, D});
    auto dy = in.as<T>("dy", {B, D});
    auto t = in.as<T>("t", {B});
    auto dtf = in.as<T>("dtf", {B, 16});
    Tensor<std::int64_t> idx(Shape{B});
    for (std::int64_t i = 0; i < B; ++i) idx[i] = (3 * i + 1) % 11;
    Tensor<T> out(Shape{B, D}), dtable = Tensor<T>::zeros(table.shape()), tf(Shape{B, 16}), dt(Shape{B});
    ops::embedding_forward<T>(ctx, table, idx, out.view());
    ops::embedding_backward<T>(ctx, idx, dy, dtable.view());
    ops::timestep_features_forward<T>(ctx, t, 16, tf.view());
    ops::timestep_features_backward<T>(ctx, t, dtf, dt.view());
    return results("emb", to_double(out), "dtable", to_double(dtable), "tf", to_double(tf), "dt", to_double(dt),
                   "pos", to_double(ops::sincos_2d_table<T>(3, 5, D)));
  });
  compare("token statistics, normalisation, cosine", []<class T>(CpuContext& ctx, Inputs& in) {
    auto x = in.as<T>("x", {B, N, D});
    auto z = in.as<T>("z", {B, N, D});
    auto dm = in.as<T>("dm", {B, D});
    auto ds = in.as<T>("ds", {B, D});
    auto dy = in.as<T>("dy", {B, N, D});
    auto dc = in.as<T>("dc", {B * N});
    Tensor<T> m(Shape{B, D}), s(Shape{B, D}), dx(x.shape()), y(x.shape()), n(Shape{B * N}), dx2(x.shape()), c(Shape{B * N}),
        da(x.shape()), db(x.shape());
    ops::token_mean_std_forward<T>(ctx, x, m.view(), s.view());
    ops::token_mean_std_backward<T>(ctx, x, m, s, dm, ds, dx.view());
    ops::l2_normalize_forward<T>(ctx, x, T(1e-12), y.view(), n.view());
    ops::l2_normalize_backward<T>(ctx, y, n, dy, T(1e-12), dx2.view());
    auto cache = ops::cosine_similarity_forward<T>(ctx, x, z, T(1e-12), c.view());
    ops::cosine_similarity_backward<T>(ctx, cache, dc, T(1e-12), da.view(), db.view());
    return results("mean", to_double(m), "std", to_double(s), "dx stats", to_double(dx), "l2 y", to_double(y),
                   "l2 dx", to_double(dx2), "cos", to_double(c), "dcos a", to_double(da), "dcos b", to_double(db));
  });
}
