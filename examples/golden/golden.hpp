#pragma once
// Every reader of the golden format (see golden/format.hpp): SiT / JiT objectives, SiT samplers,
// target encoders. For irepa-golden-check and the tests; not part of the public include tree.

#include "golden/encoders.hpp"
#include "golden/format.hpp"
#include "golden/objectives.hpp"
#include "golden/samplers.hpp"
#include "golden/vae.hpp"
