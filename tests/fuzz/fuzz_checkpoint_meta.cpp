// Fuzz harness: any bytes as a checkpoint (a safetensors file), then its metadata validated as
// a resume reads it (read_checkpoint_meta: step, optimizer steps, EMAs, RNG state, config) and
// the config compared with a run's. Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"
#include "irepa/train/checkpoint.hpp"
#include "irepa/train/run_folder.hpp"

IREPA_FUZZ_TARGET(checkpoint_meta) {
  try {
    const irepa::io::SafeTensorsFile f(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.safetensors");
    const irepa::CheckpointMeta m = irepa::read_checkpoint_meta(f);
    const nlohmann::json run = {{"model", "SiT-B/2"}, {"learning-rate", 1e-4}, {"path-type", "linear"}};
    (void)irepa::compare_run_config(m.config, run, irepa::default_resume_may_change());
  } catch (const irepa::Error&) {
  }
}
