#pragma once
// A small SiT checkpoint as irepa-train writes one, for the tests of what irepa-generate reads:
// ema.* parameters, model.* parameters and the pos_embed buffer, and the run's settings (the
// head count). Random weights (the output layer too, so samples depend on them).

#include <filesystem>

#include "irepa/align/head.hpp"
#include "irepa/io/params.hpp"
#include "irepa/models/sit.hpp"
#include "test_support.hpp"

namespace irepa::test {

/// SiT depth 2, width 32, 2 heads, patch 4 on 16x16x3 images, 4 classes.
inline void write_sit_checkpoint(const std::filesystem::path& p) {
  SiTConfig c;
  c.input_size = 16, c.in_channels = 3, c.num_classes = 4, c.depth = 2, c.hidden_size = 32, c.num_heads = 2, c.patch_size = 4;
  c.z_dims = {};
  SiT<Dynamic, DynamicPatch, REPAHead, float> m(c, REPAHead{});
  m.init(rng().seed());
  rng().normal(m.params().values(), 0.0f, 0.05f);  // adaLN-Zero's zeros would make every sample the same
  io::SafeTensorsWriter w;
  m.save(w, "model.");
  io::add_params(w, m.params(), "ema.");
  w.set_metadata("format", "irepa-checkpoint-v1");
  w.set_metadata("config", R"({"num_heads": 2, "job": "test"})");
  w.write(p.string());
}

}  // namespace irepa::test
