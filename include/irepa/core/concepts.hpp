#pragma once
// The contract header: every concept a user type may satisfy, with what each member requires
// and ensures. Public policy types are followed by static_assert(irepa::<Concept><Type>), and
// the public templates are constrained by these concepts so a wrong policy fails here, once.
//
// Conventions shared by every layer-like concept:
//  - forward(ctx, inputs...) returns a Cache: everything backward needs (inputs it must see,
//    intermediate activations, the output). The cache owns or views memory; its size is the
//    layer's activation memory.
//  - backward(ctx, cache, d_output, d_input...) ASSIGNS input gradients (every element is
//    written) and ACCUMULATES parameter gradients (param.grad += ...), so that several uses of
//    one parameter, or several micro-batches, add up. The gradient checker enforces both.
//  - Shapes are checked on entry; a mismatch throws irepa::Error naming op and shapes.

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

#include "irepa/core/arena.hpp"
#include "irepa/core/context.hpp"
#include "irepa/core/tensor.hpp"

namespace irepa {

// ---------------------------------------------------------------------------------------------
// Devices and backends

/// A device tag (Cpu, Cuda).
///  requires: D::name: a short name ("cpu"); D::host_accessible: whether the host may
///            dereference its memory; D::allocate(bytes) -> void* (throws irepa::Error on
///            failure, nullptr for 0 bytes); D::deallocate(p) (noexcept, accepts nullptr).
template <class D>
concept Device = requires(std::size_t n, void* p) {
  { D::name } -> std::convertible_to<std::string_view>;
  { D::host_accessible } -> std::convertible_to<bool>;
  { D::allocate(n) } -> std::same_as<void*>;
  { D::deallocate(p) } noexcept;
};

/// An execution context: where ops run (thread pool; stream + library handles).
///  requires: C::device_type is a Device; C::name(); c.synchronize() waits for queued work.
///  ensures:  ops taking a C& run on C::device_type memory only.
template <class C>
concept Backend = Device<typename C::device_type> && requires(const C& c) {
  { C::name() } -> std::convertible_to<std::string_view>;
  c.synchronize();
};

// ---------------------------------------------------------------------------------------------
// Layers

namespace detail {
/// The visitor a layer's visit_params is called with: (dotted name, Param&).
template <class T, class D>
struct ParamVisitorArchetype {
  void operator()(const std::string&, Param<T, D>&) const {}
};
}  // namespace detail

/// A layer with trainable parameters held as Param members.
///  requires: L::scalar_type (float, double; bf16 on the GPU); L::device_type;
///            l.visit_params(v, prefix) calls v(join_name(prefix, name), param) for every Param,
///            in a fixed order, with the reference's state_dict name.
///  ensures:  ParamArena(l) lays the parameters out contiguously and binds their views.
template <class L>
concept Layer = requires(L& l, detail::ParamVisitorArchetype<typename L::scalar_type, typename L::device_type> v,
                         std::string_view prefix) {
  typename L::scalar_type;
  typename L::device_type;
  l.visit_params(v, prefix);
};

/// A layer with one input and one output on context C.
///  requires: L::Cache; l.forward(ctx, x) -> Cache, with cache.output() the result;
///            l.backward(ctx, cache, dy, dx): dx (shape of x) assigned, parameter grads accumulated.
template <class L, class C = CpuContext>
concept UnaryLayer =
    Layer<L> && Backend<C> &&
    requires(const L& l, C& ctx, ConstView<typename L::scalar_type, typename L::device_type> x,
             typename L::Cache& cache, TensorView<typename L::scalar_type, typename L::device_type> dx) {
      { l.forward(ctx, x) } -> std::same_as<typename L::Cache>;
      { cache.output() } -> std::convertible_to<ConstView<typename L::scalar_type, typename L::device_type>>;
      l.backward(ctx, cache, x, dx);
    };

// ---------------------------------------------------------------------------------------------
// Alignment policies. A policy is a type the user names in a model's template argument list
// (iREPAHead<Conv3x3, SpatialNorm>); it is independent of the scalar type.

/// The token grid a projector works on: T = h * w tokens, row-major (token = row * w + col).
struct TokenGrid {
  std::int64_t h = 0, w = 0;
  std::int64_t tokens() const { return h * w; }
};

/// What a projector is built from (the model fills it from its config).
struct ProjectorSpec {
  std::int64_t in_dim = 0;        // D: the transformer width
  std::int64_t out_dim = 0;       // z_dim of the target encoder
  std::int64_t hidden_dim = 2048; // MLP projectors
  int kernel_size = 0;            // convolutional projectors; 0: the projector's own default
};

/// A projector policy P: maps hidden tokens [B, T, D] to predicted target tokens [B, T, Z].
///  requires: P::layer<T> is a Layer constructible from a ProjectorSpec, whose parameters are
///            named relative to the projector ("projection_layer.weight" or
///            "projection_layer.0.weight");
///            forward(ctx, x [B, T, D], grid) -> Cache with cache.output() [B, T, Z];
///            backward(ctx, cache, dy [B, T, Z], dx [B, T, D]) (dx assigned, grads accumulated).
///  ensures:  token order is preserved (projectors may mix neighbouring tokens on the grid).
template <class P, class T, class C = CpuContext>
concept ProjectorOn =
    Layer<typename P::template layer<T>> && std::constructible_from<typename P::template layer<T>, const ProjectorSpec&> &&
    requires(const typename P::template layer<T>& l, C& ctx, ConstView<T, typename C::device_type> x, TokenGrid g,
             typename P::template layer<T>::Cache& cache, TensorView<T, typename C::device_type> dx) {
      { l.forward(ctx, x, g) } -> std::same_as<typename P::template layer<T>::Cache>;
      { cache.output() } -> std::convertible_to<ConstView<T, typename C::device_type>>;
      l.backward(ctx, cache, x, dx);
    };
template <class P>
concept Projector = ProjectorOn<P, double> && ProjectorOn<P, float>;

/// The layer a projector policy builds for scalar T on device D: P::layer<T, D> when the
/// policy declares one, otherwise P::layer<T> (a CPU layer; models on other devices refuse it).
template <class P, class T, class D>
struct projector_layer {
  using type = typename P::template layer<T>;
};
template <class P, class T, class D>
  requires requires { typename P::template layer<T, D>; }
struct projector_layer<P, T, D> {
  using type = typename P::template layer<T, D>;
};
template <class P, class T, class D>
using projector_layer_t = typename projector_layer<P, T, D>::type;

/// A normalizer policy N: transforms frozen target tokens [B, T, Z] before the loss
/// (no gradient flows into targets).
///  requires: n.apply(ctx, z [B, T, Z], out [B, T, Z]) writes every element of out; out may
///            alias z. N is default-constructible (the reference's defaults) and holds its settings.
///  ensures:  per-image: the result of image b depends on image b only.
template <class N, class T, class C = CpuContext>
concept NormalizerOn = std::default_initializable<N> &&
                       requires(const N& n, C& ctx, ConstView<T, typename C::device_type> z, TensorView<T, typename C::device_type> out) {
                         n.apply(ctx, z, out);
                       };
template <class N>
concept Normalizer = NormalizerOn<N, double> && NormalizerOn<N, float>;

/// An alignment loss policy L: a scalar from predicted tokens zhat and targets z, both [B, T, Z].
///  requires: L::cache<T>; l.forward(ctx, zhat, z) -> cache<T> with cache.value (the loss,
///            convertible to double); l.backward(ctx, cache, dloss, dzhat) assigns dzhat
///            [B, T, Z] = dloss * d(loss)/d(zhat).
///  ensures:  the loss is a mean over images and tokens, so it does not grow with B or T.
template <class L, class T, class C = CpuContext>
concept AlignmentLossOn =
    std::default_initializable<L> &&
    requires(const L& l, C& ctx, ConstView<T, typename C::device_type> zhat, ConstView<T, typename C::device_type> z,
             typename L::template cache<T>& cache, T dloss, TensorView<T, typename C::device_type> dzhat) {
      { l.forward(ctx, zhat, z) } -> std::same_as<typename L::template cache<T>>;
      { cache.value } -> std::convertible_to<double>;
      l.backward(ctx, cache, dloss, dzhat);
    };
template <class L>
concept AlignmentLoss = AlignmentLossOn<L, double> && AlignmentLossOn<L, float>;

static_assert(Device<Cpu> && Device<Cuda>);
static_assert(Backend<CpuContext> && Backend<CudaContext>);

}  // namespace irepa
