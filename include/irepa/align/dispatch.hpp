#pragma once
// Choosing an alignment head at run time (command lines, config files, golden files): the
// choice names a projector and a normalizer, and with_head calls a generic callable with the
// matching iREPAHead, so the rest of the program is compiled once per combination.

#include <cmath>
#include <string>
#include <string_view>
#include <utility>

#include "irepa/align/head.hpp"

namespace irepa {

struct HeadChoice {
  std::string projection = "mlp";  // mlp | linear | conv (conv: kernel size from the model config)
  std::string spnorm = "none";     // none | zscore
  double zscore_alpha = 0.6;
};

/// f(head) with head an iREPAHead<P, N> for the chosen P in {MlpProjector, LinearProjector,
/// ConvProjector<0>} and N in {NoNorm, SpatialNorm{alpha}}. Every instantiation of f must
/// return the same type. Unknown names are an irepa::Error naming the accepted ones.
template <class F>
decltype(auto) with_head(const HeadChoice& c, F&& f) {
  auto with_norm = [&]<class P>() -> decltype(auto) {
    if (c.spnorm == "none") return f(iREPAHead<P, NoNorm>{});
    if (c.spnorm == "zscore") {
      IREPA_CHECK(std::isfinite(c.zscore_alpha), "spatial normalisation: zscore alpha is {}, expected a finite value", c.zscore_alpha);
      return f(iREPAHead<P, SpatialNorm>{SpatialNorm{.alpha = c.zscore_alpha}});
    }
    fail("spatial normalisation '{}' is not known; expected none or zscore", c.spnorm);
  };
  if (c.projection == "mlp") return with_norm.template operator()<MlpProjector>();
  if (c.projection == "linear") return with_norm.template operator()<LinearProjector>();
  if (c.projection == "conv") return with_norm.template operator()<ConvProjector<0>>();
  fail("projection layer type '{}' is not known; expected mlp, linear or conv", c.projection);
}

}  // namespace irepa
