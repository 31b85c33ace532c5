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
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

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

/// A loss value as a policy's cache holds it: a [1] double tensor on the device D (reduced where
/// the tokens are, so a GPU step need not wait for it), or a host double (a CPU policy that
/// reduces on the host; the objective stores it on the device).
template <class V, class D>
concept LossValue = std::convertible_to<V, double> || std::same_as<V, Tensor<double, D>>;

/// An alignment loss policy L: a scalar from predicted tokens zhat and targets z, both [B, T, Z].
///  requires: L::cache<T>; l.forward(ctx, zhat, z) -> cache<T> with cache.value the loss (a
///            LossValue); l.backward(ctx, cache, dloss, dzhat) assigns dzhat [B, T, Z] =
///            dloss * d(loss)/d(zhat).
///  ensures:  the loss is a mean over images and tokens, so it does not grow with B or T.
template <class L, class T, class C = CpuContext>
concept AlignmentLossOn =
    std::default_initializable<L> &&
    requires(const L& l, C& ctx, ConstView<T, typename C::device_type> zhat, ConstView<T, typename C::device_type> z,
             typename L::template cache<T>& cache, T dloss, TensorView<T, typename C::device_type> dzhat) {
      { l.forward(ctx, zhat, z) } -> std::same_as<typename L::template cache<T>>;
      requires LossValue<std::remove_cvref_t<decltype(cache.value)>, typename C::device_type>;
      l.backward(ctx, cache, dloss, dzhat);
    };
template <class L>
concept AlignmentLoss = AlignmentLossOn<L, double> && AlignmentLossOn<L, float>;

// ---------------------------------------------------------------------------------------------
// Models and training objectives: what the one trainer (train/trainer.hpp) and the samplers ask
// of a diffusion transformer (SiT, JiT) and of its objective (SiTObjective, JiTObjective).

class Philox;

/// Told by a model's backward that gradient arena elements [first, last) are final for this
/// step (a block's, a projector's, the final layer's), so that a data-parallel trainer can
/// start all-reducing them while the rest of the backward runs. Empty: nobody listens.
using GradReady = std::function<void(std::int64_t first, std::int64_t last)>;

/// What an objective prepares from a batch before the model runs, all on the model's device.
template <class T, class D = Cpu>
struct ObjectiveInputs {
  Tensor<T, D> t;            // [B] time per image, as the model sees it
  Tensor<T, D> noise;        // [B, C, H, W] the noise as used
  Tensor<T, D> model_input;  // [B, C, H, W] the noised data
  Tensor<T, D> target;       // [B, C, H, W] what the loss compares against (SiT: velocity; JiT: target velocity)
};

/// How a trainer draws its sample grids (each objective reads these in its sampler's terms).
struct SampleSettings {
  int steps = 50;
  bool heun = false;             // Heun (the last interval Euler) instead of Euler
  double cfg_scale = 1.0;        // classifier-free guidance
  double guidance_low = 0.0, guidance_high = 1.0;  // SiT: guided on [low, high]; JiT: interval_min / interval_max
};

/// A diffusion transformer with an alignment head (SiT, JiT, or a user model of the same shape).
///  requires: scalar_type, device_type, Context, Cache, HostModel (the same model on the CPU),
///            head_type; params() the flat arena; label_rows() the label table's rows (the
///            null class included); num_projectors(); host_twin() a HostModel of the same
///            configuration; construction from (config, head); config.{num_classes,
///            in_channels, input_size};
///            forward(ctx, x [B, C, H, W], t [B], y [B] int64, all on the device) -> Cache with
///            output() [B, C, H, W] and projected(j) [B, T, z_j];
///            backward(ctx, cache, dout, dzs) accumulating every parameter gradient (it may take
///            a GradReady fifth argument and call it as parts of the arena become final);
///            infer(ctx, x, t, y) -> the output [B, C, H, W] without a training cache (sampling).
///  ensures:  forward and infer give the same output for the same inputs.
template <class M>
concept DiffusionModel =
    requires { typename M::Cache; typename M::HostModel; typename M::head_type; } &&
    requires(const M& m, const typename M::Context& ctx, ConstView<typename M::scalar_type, typename M::device_type> x,
             ConstView<std::int64_t, typename M::device_type> y, const typename M::Cache& c,
             std::span<const ConstView<typename M::scalar_type, typename M::device_type>> dzs) {
      { m.params() } -> std::same_as<const ParamArena<typename M::scalar_type, typename M::device_type>&>;
      { m.label_rows() } -> std::convertible_to<std::int64_t>;
      { m.num_projectors() } -> std::convertible_to<std::size_t>;
      { m.host_twin() } -> std::same_as<typename M::HostModel>;
      { m.config.num_classes } -> std::convertible_to<std::int64_t>;
      { m.config.in_channels } -> std::convertible_to<std::int64_t>;
      { m.config.input_size } -> std::convertible_to<std::int64_t>;
      { m.forward(ctx, x, x, y) } -> std::same_as<typename M::Cache>;
      { c.output() } -> std::convertible_to<ConstView<typename M::scalar_type, typename M::device_type>>;
      { c.projected(std::size_t{0}) } -> std::convertible_to<ConstView<typename M::scalar_type, typename M::device_type>>;
      m.backward(ctx, c, x, dzs);
      { m.infer(ctx, x, x, y) } -> std::same_as<Tensor<typename M::scalar_type, typename M::device_type>>;
    } && std::constructible_from<M, decltype(std::declval<const M&>().config), typename M::head_type>;

/// A training objective O for model M: how noised inputs and targets are made, the denoising
/// loss, and how to sample from a model trained with it. Every tensor is on the model's device;
/// diffusion/objective.hpp builds the inputs from these pieces (make_inputs, draw_inputs).
///  requires: O::Terms<T, D> (what the loss keeps besides its value: SiT the per-image losses,
///            JiT the predicted velocity); o.proj_coeff (the alignment coefficient);
///            o.draw_time(ctx, rng, t [B]) and o.draw_noise(ctx, rng, noise [B, C, H, W]) fill
///            from rng on the device; o.interpolate(ctx, x, inputs) writes inputs.model_input
///            and inputs.target from x, inputs.t and inputs.noise;
///            o.denoising(ctx, inputs, out, grad_scale, dout, loss) -> Terms, writing the loss
///            into loss [1] (double) and assigning dout = d(grad_scale * loss)/d(out);
///            o.sample(ctx, model, labels [N] on the host, seed, settings) -> images [N, C, H, W]
///            on the host, in the data's range.
///  ensures:  the draws consume rng the same way on every device (same values, same order).
template <class O, class M>
concept ObjectiveFor =
    DiffusionModel<M> &&
    requires(const O& o, const M& m, const typename M::Context& ctx, ConstView<typename M::scalar_type, typename M::device_type> x,
             Philox& rng, ObjectiveInputs<typename M::scalar_type, typename M::device_type>& in,
             TensorView<typename M::scalar_type, typename M::device_type> dout, TensorView<double, typename M::device_type> loss,
             ConstView<std::int64_t> labels, const SampleSettings& settings) {
      typename O::template Terms<typename M::scalar_type, typename M::device_type>;
      { o.proj_coeff } -> std::convertible_to<double>;
      o.draw_time(ctx, rng, dout);
      o.draw_noise(ctx, rng, dout);
      o.interpolate(ctx, x, in);
      { o.denoising(ctx, in, x, 1.0, dout, loss) } -> std::same_as<typename O::template Terms<typename M::scalar_type, typename M::device_type>>;
      { o.sample(ctx, m, labels, std::uint64_t{0}, settings) } -> std::same_as<Tensor<double>>;
    };

static_assert(Device<Cpu> && Device<Cuda>);
static_assert(Backend<CpuContext> && Backend<CudaContext>);

}  // namespace irepa
