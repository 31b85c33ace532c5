// Fuzz harness: any bytes as a YAML config (cli::apply_yaml_text, as --config reads it) into a
// flag table of every value type the tools use. Only irepa::Error may come out.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../../examples/cli_flags.hpp"
#include "fuzz_target.hpp"

IREPA_FUZZ_TARGET(yaml_config) {
  std::string s = "x";
  std::int64_t n = 0;
  int k = 0;
  double d = 0;
  bool b = false;
  std::vector<irepa::cli::Flag> fl = {
      irepa::cli::flag("fuzz", "enc-type", s, "a string"),     irepa::cli::flag("fuzz", "batch-size", n, "an int64"),
      irepa::cli::flag("fuzz", "sample_steps", k, "an int"),   irepa::cli::flag("fuzz", "learning-rate", d, "a double"),
      irepa::cli::flag("fuzz", "hflip", b, "a bool"),
  };
  try {
    irepa::cli::apply_yaml_text("fuzz", std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml", fl);
  } catch (const irepa::Error&) {
  }
}
