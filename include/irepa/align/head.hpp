#pragma once
// The alignment head a model is parameterised by: which projector maps hidden tokens to the
// target width, how the targets are normalised, and which loss compares them.
//
//   iREPAHead<Conv3x3, SpatialNorm>      the paper's improvement (3x3 conv, spatial z-score)
//   REPAHead = iREPAHead<MlpProjector, NoNorm>
//
// A policy that does not satisfy its concept fails here, at the requires-clause, with the
// concept's name (Projector, Normalizer, AlignmentLoss) in the message.

#include "irepa/align/losses.hpp"
#include "irepa/align/normalizers.hpp"
#include "irepa/align/projectors.hpp"

namespace irepa {

template <class P, class N, class L = NegCosine>
  requires Projector<P> && Normalizer<N> && AlignmentLoss<L>
struct iREPAHead {
  using projector = P;
  using normalizer_type = N;
  using loss_type = L;

  N normalizer{};  // its settings (SpatialNorm's alpha)
  L loss{};
};

using REPAHead = iREPAHead<MlpProjector, NoNorm>;

/// What a model accepts as its head: an iREPAHead or a user type with the same members.
template <class H>
concept AlignmentHead = Projector<typename H::projector> && Normalizer<typename H::normalizer_type> &&
                        AlignmentLoss<typename H::loss_type> && std::default_initializable<H> &&
                        requires(const H& h) {
                          h.normalizer;
                          h.loss;
                        };

static_assert(AlignmentHead<REPAHead>);
static_assert(AlignmentHead<iREPAHead<Conv3x3, SpatialNorm>>);

}  // namespace irepa
