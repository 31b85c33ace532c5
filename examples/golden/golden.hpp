#pragma once
// Every reader of the golden format (see golden/format.hpp): SiT / JiT objectives, SiT samplers,
// target encoders, the SD-VAE, the ADM evaluator's Inception, statistics and .npz files. For
// irepa-golden-check and the tests; not part of the public include tree.

#include "golden/adm.hpp"
#include "golden/encoders.hpp"
#include "golden/format.hpp"
#include "golden/inception.hpp"
#include "golden/objectives.hpp"
#include "golden/samplers.hpp"
#include "golden/vae.hpp"
