// Fuzz harness: any bytes as a torch.save file (zip or legacy layout) through io::TensorFile, then
// every tensor read, the metadata and the object as JSON. Only irepa::Error may come out; nothing
// in the pickle may run.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"
#include "read_tensors.hpp"

IREPA_FUZZ_TARGET(torch) {
  try {
    const irepa::io::TensorFile f(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.pt");
    (void)f.torch_object().dump();
    for (const auto& [k, v] : f.metadata()) (void)k, (void)v.size();
    irepa::fuzz::read_every_tensor(f);
  } catch (const irepa::Error&) {
  }
}
