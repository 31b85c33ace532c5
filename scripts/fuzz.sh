#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz (cmake --preset fuzz: clang, ASan + UBSan) and
# runs each for FUZZ_SECONDS (default 60) from its seeds (the committed corpora and the readers'
# fixtures, as the fuzz ctests use them). A crash, a sanitizer report or an exception other than
# irepa::Error stops a harness with its input saved under build/fuzz/crashes/. Prints one line
# per harness: executions, coverage (cov: edges), corpus size, and the outcome.
#
#   bash scripts/fuzz.sh                                   # every harness, 60 s each
#   FUZZ_SECONDS=600 FUZZ_JOBS=2 bash scripts/fuzz.sh      # the >= 10 minute runs of docs/reliability.md, two at a time
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh safetensors npy  # some of them
set -uo pipefail
cd "$(dirname "$0")/.."
all=(arrow checkpoint_meta idx image_decode npy npz png safetensors tfrecord torch yaml_config)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target "${targets[@]/#/fuzz_}" || exit 1
mkdir -p build/fuzz/crashes build/fuzz/logs
seeds() {
  case $1 in
    arrow) find tests/data/arrow -type f ;;
    checkpoint_meta | idx | npy | tfrecord) find "tests/fuzz/corpus/$1" -type f ;;
    image_decode) find tests/data/images -type f ;;
    npz) find tests/data/npz -type f ;;
    png) find tests/data/masks tests/data/images -name '*.png' ;;
    safetensors) find tests/fuzz/corpus/safetensors -type f; echo tests/data/resize_cases.safetensors ;;
    torch) ls tests/data/torch/mixed.pt tests/data/torch/mixed_legacy.pt tests/data/torch/latents_stats.pt tests/data/torch/forbidden_global.pt ;;
    yaml_config) find configs -name '*.yaml' ;;
  esac
}
run_one() {
  local t=$1 corpus=build/fuzz/corpus/$1 log=build/fuzz/logs/$1.log
  mkdir -p "$corpus"
  seeds "$t" | while read -r f; do cp "$f" "$corpus/" 2>/dev/null; done
  "build/fuzz/tests/fuzz/fuzz_$t" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=4096 -max_len=65536 -timeout=30 \
    -print_final_stats=1 -artifact_prefix=build/fuzz/crashes/"$t"- "$corpus" >"$log" 2>&1
  local rc=$?
  local last execs cov
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | awk '{print $2}')
  printf '%-16s rc=%d execs=%s cov=%s corpus=%s %s\n' "$t" "$rc" "${execs:-?}" "${cov:-?}" "$(ls "$corpus" | wc -l)" \
    "$(grep -E 'ERROR|SUMMARY' "$log" | head -n 2 | tr '\n' ' ')"
}
jobs=${FUZZ_JOBS:-1}
for t in "${targets[@]}"; do
  run_one "$t" &
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
done
wait
