// Fuzz harness: any bytes as a TFRecord stream (TensorBoard's event files), read strictly and
// with a cut tail allowed; the records found must lie inside the input. Only irepa::Error may
// come out.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz_target.hpp"
#include "irepa/io/tfrecord.hpp"

IREPA_FUZZ_TARGET(tfrecord) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (const bool tail : {false, true}) {
    try {
      for (const std::string_view r : irepa::io::read_tfrecords(bytes, "fuzz.tfevents", tail))
        if (r.data() < bytes.data() || r.data() + r.size() > bytes.data() + bytes.size()) std::abort();
    } catch (const irepa::Error&) {
    }
  }
}
