#pragma once
// The flag table shared by irepa-train and irepa-train-jit: one entry per flag feeds both the
// command line (CLI11) and the YAML config file, so the two accept exactly the same keys.
// Names match with '-' and '_' treated alike (the SiT reference spells flags with dashes, the
// JiT reference with underscores; both spellings work on the command line and in YAML).

#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <irepa/core/context.hpp>
#include <irepa/core/error.hpp>
#include <irepa/io/files.hpp>
#include <irepa/train/run_folder.hpp>
#include <irepa/train/tensorboard.hpp>

namespace irepa::cli {

struct Flag {
  std::string name, help;
  std::function<void(CLI::App&)> add;
  std::function<void(const YAML::Node&)> from_yaml;
  std::function<std::string()> value;  // the current value as text
};

using irepa::dashed_key;

/// "--name" plus, when the name has '_' or '-', the other spelling as an alias.
inline std::string option_names(const std::string& name) {
  std::string other = name;
  const bool underscored = name.find('_') != std::string::npos;
  std::replace(other.begin(), other.end(), underscored ? '_' : '-', underscored ? '-' : '_');
  return other == name ? "--" + name : "--" + name + ",--" + other;
}

template <class V>
Flag flag(const std::string& prog, const std::string& name, V& target, const std::string& help) {
  return {name, help,
          [&target, name, help](CLI::App& app) {
            if constexpr (std::is_same_v<V, bool>)  // --name, --name=false, --no-name
              app.add_flag(option_names(name) + ",!--no-" + name, target, help)->capture_default_str();
            else
              app.add_option(option_names(name), target, help)->capture_default_str();
          },
          [&target, name, prog](const YAML::Node& n) {
            try {
              target = n.as<V>();
            } catch (const YAML::Exception&) {
              fail("{}: config key '{}' has the value '{}', which is not a {}", prog, name, n.Scalar(),
                   std::is_same_v<V, std::string> ? "string"
                   : std::is_same_v<V, bool>      ? "true/false"
                   : std::is_integral_v<V>        ? "whole number"
                                                  : "number");
            }
          },
          [&target] { return fmt::format("{}", target); }};
}

/// YAML text (a config file's contents; `where` names it) into the options: every key must name
/// a flag, once.
inline void apply_yaml_text(const std::string& prog, const std::string& text, const std::string& where, std::vector<Flag>& fl) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{}: cannot read config '{}': {}", prog, where, e.what());
  }
  IREPA_CHECK(root.IsMap() || root.IsNull(), "{}: config '{}' is not a mapping of flag names to values", prog, where);
  std::vector<std::string> seen;
  for (const auto& kv : root) {
    IREPA_CHECK(kv.first.IsScalar(), "{}: config '{}' has a key that is not a name", prog, where);
    const std::string raw = kv.first.Scalar(), key = dashed_key(raw);
    auto it = std::find_if(fl.begin(), fl.end(), [&](const Flag& f) { return dashed_key(f.name) == key; });
    IREPA_CHECK(it != fl.end(), "{}: config '{}' has the key '{}', which is not a flag (see --help)", prog, where,
                raw.size() > 80 ? raw.substr(0, 80) + "..." : raw);
    IREPA_CHECK(std::find(seen.begin(), seen.end(), key) == seen.end(), "{}: config '{}' sets '{}' twice", prog, where, raw);
    seen.push_back(key);
    IREPA_CHECK(!kv.second.IsSequence() && !kv.second.IsMap(), "{}: config '{}' key '{}' has a list or mapping, expected one value", prog, where, raw);
    it->from_yaml(kv.second);
  }
}

/// A flag the reference's scripts take that changes nothing here; `why` says so in --help. It is
/// accepted so that the reference's command lines and YAML files run as they are.
template <class V>
Flag no_effect(const std::string& prog, const std::string& name, V& target, const std::string& why) {
  return flag(prog, name, target, "the reference's; no effect here: " + why);
}

/// --report-to (the reference's logging backend) -> the trainer's second log: tensorboard, wandb
/// and all write TensorBoard event files beside log.jsonl (wandb itself is not linked here;
/// `wandb sync --sync-tensorboard <run folder>` imports the files); none writes log.jsonl only.
inline std::function<std::unique_ptr<LogSink>(const std::string&)> report_to_sink(const std::string& prog, const std::string& flag,
                                                                                  const std::string& value) {
  if (value == "none") return {};
  IREPA_CHECK(value == "tensorboard" || value == "wandb" || value == "all",
              "{}: --{} is '{}', expected tensorboard, wandb, all (each writes TensorBoard event files) or none", prog, flag, value);
  return tensorboard_sink();
}

/// The reference's alignment losses: --proj-coeff and --projection-loss-type are comma lists of
/// equal length that it pairs (SILoss adds coeff_i x loss_i). Cosine is the one loss it
/// registers, so the total coefficient is the sum. `sep` spells the flag names ('-' or '_').
inline double total_proj_coeff(const std::string& prog, const std::string& coeffs, const std::string& types, char sep) {
  const auto split = [](const std::string& text) {
    std::vector<std::string> out;
    std::string cur;
    for (const char c : text + ",") {
      if (c == ',') {
        const auto b = cur.find_first_not_of(" \t"), e = cur.find_last_not_of(" \t");
        if (b != std::string::npos) out.push_back(cur.substr(b, e - b + 1));
        cur.clear();
      } else {
        cur += c;
      }
    }
    return out;
  };
  const std::string pc = std::string("--proj") + sep + "coeff", plt = std::string("--projection") + sep + "loss" + sep + "type";
  const auto cs = split(coeffs), ts = split(types);
  IREPA_CHECK(!cs.empty() && cs.size() == ts.size(), "{}: {} '{}' has {} coefficients and {} '{}' {} loss types; the reference pairs them one to one",
              prog, pc, coeffs, cs.size(), plt, types, ts.size());
  double total = 0;
  for (std::size_t i = 0; i < cs.size(); ++i) {
    IREPA_CHECK(ts[i] == "cosine", "{}: {} '{}' is not implemented (cosine is the one loss the reference registers)", prog, plt, ts[i]);
    std::size_t used = 0;
    double c = 0;
    try {
      c = std::stod(cs[i], &used);
    } catch (const std::exception&) {
      used = 0;
    }
    IREPA_CHECK(used == cs[i].size() && std::isfinite(c) && c >= 0, "{}: {} entry '{}' is not a non-negative number", prog, pc, cs[i]);
    total += c;
  }
  return total;
}

/// A YAML config file (a regular file of at most 1 MiB) into the options.
inline void apply_yaml(const std::string& prog, const std::string& path, std::vector<Flag>& fl) {
  apply_yaml_text(prog, io::read_regular_file(path, prog + ": config", std::size_t{1} << 20), path, fl);
}

/// Applies a --config file named on the command line before parsing it (the command line wins).
inline void apply_config_first(const std::string& prog, int argc, char** argv, std::vector<Flag>& fl) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) apply_yaml(prog, argv[i + 1], fl);
    if (a.rfind("--config=", 0) == 0) apply_yaml(prog, a.substr(9), fl);
  }
}

/// The resolved value of every flag, as text, for args.json and checkpoints.
inline nlohmann::json resolved(const std::vector<Flag>& fl) {
  nlohmann::json j;
  for (const auto& f : fl) j[f.name] = f.value();
  return j;
}

/// --device: "cpu" -> -1, "cuda" -> 0, "cuda:N" -> N; anything else is an error naming the forms.
inline int parse_device(const std::string& prog, const std::string& device) {
  if (device == "cpu") return -1;
  if (device == "cuda") return 0;
  IREPA_CHECK(device.starts_with("cuda:") && device.size() > 5 && device.size() < 10 &&
                  device.find_first_not_of("0123456789", 5) == std::string::npos,
              "{}: --device '{}' is not known; expected cpu, cuda or cuda:N", prog, device);
  return std::stoi(device.substr(5));
}

/// The GPU-only settings (--matmul-precision, --attention): checked on any device, refused on the CPU
/// unless at their CPU values.
inline void check_gpu_settings(const std::string& prog, bool on_gpu, const std::string& matmul_precision,
                               const std::string& attention) {
  IREPA_CHECK(attention == "fused" || attention == "materialized",
              "{}: --attention '{}' is not known; expected materialized or fused", prog, attention);
  const bool fp32 = parse_matmul_precision(matmul_precision) == MatmulPrecision::fp32;
  IREPA_CHECK(on_gpu || fp32, "{}: --matmul-precision {} runs on a GPU only; the CPU computes in fp32", prog, matmul_precision);
  IREPA_CHECK(on_gpu || attention == "materialized", "{}: --attention {} runs on a GPU only", prog, attention);
}

/// Where a tool runs: --device, --matmul-precision, --attention, --threads, the same for both
/// tools (spelled with `sep`, '-' or '_', as each tool's reference spells its flags).
struct Placement {
  std::string device = "cpu", matmul_precision = "fp32", attention = "materialized";
  int threads = 0;
};
inline std::vector<Flag> placement_flags(const std::string& prog, Placement& p, char sep) {
  const std::string s(1, sep);
  return {
      flag(prog, "threads", p.threads, "CPU threads (0: all cores)"),
      flag(prog, "device", p.device, "cpu, or cuda[:N] (the model, optimizer and EMAs on GPU N; needs a build with CUDA)"),
      flag(prog, "matmul" + s + "precision", p.matmul_precision,
           "GPU matrix products: fp32 (exact float, the default), tf32 or bf16 (tensor cores, FP32 accumulation); the CPU takes fp32 only"),
      flag(prog, "attention", p.attention,
           "GPU attention: materialized (cuBLAS products around a softmax kernel) or fused (no T x T probabilities in memory)"),
  };
}
/// The placement checked: the device index (-1: the CPU), with the GPU-only settings refused on the CPU.
inline int check_placement(const std::string& prog, const Placement& p) {
  const int device = parse_device(prog, p.device);
  check_gpu_settings(prog, device >= 0, p.matmul_precision, p.attention);
  return device;
}

/// A tool's command line: a --config FILE first (the command line then wins over it), then every
/// flag. Returns the status to exit with (help, a bad flag or file), or -1 to go on.
inline int parse(const std::string& prog, const std::string& description, int argc, char** argv, std::vector<Flag>& fl) {
  try {
    apply_config_first(prog, argc, argv, fl);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  CLI::App app{description};
  std::string config_path;
  app.add_option("--config", config_path, "YAML file of flag values (the command line wins)");
  for (auto& f : fl) f.add(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return -1;
}

}  // namespace irepa::cli
