// Fuzz harness: any bytes as a safetensors file (io::TensorFile over memory), then every tensor
// read as the loaders read them and the metadata looked up. Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>

#include "fuzz_target.hpp"
#include "read_tensors.hpp"

IREPA_FUZZ_TARGET(safetensors) {
  try {
    const irepa::io::SafeTensorsFile f(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.safetensors");
    (void)f.metadata("format");
    irepa::fuzz::read_every_tensor(f);
    (void)f.info("not-there");
  } catch (const irepa::Error&) {
  }
}
