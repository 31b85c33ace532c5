#!/usr/bin/env bash
# Builds the libFuzzer targets (cmake --preset fuzz: clang, ASan + UBSan) and runs each for
# FUZZ_SECONDS (default 60) from the committed fixtures as seeds. A crash, a sanitizer report or
# an exception other than irepa::Error stops it with the input saved under build/fuzz/crashes/.
#
#   bash scripts/fuzz.sh              # every target, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh fuzz_arrow_stream
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset fuzz >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_arrow_stream fuzz_image_decode fuzz_npz)
cmake --build --preset fuzz --target "${targets[@]}"
mkdir -p build/fuzz/crashes
for t in "${targets[@]}"; do
  corpus=build/fuzz/corpus/$t
  mkdir -p "$corpus"
  case $t in
    fuzz_arrow_stream) seeds=$(find tests/data/arrow -name '*.arrow') ;;
    fuzz_image_decode) seeds=$(find tests/data/images tests/data/masks -name '*.png' -o -name '*.jpg') ;;
    fuzz_npz) seeds=$(find tests/data/npz -name '*.npz') ;;
  esac
  cp $seeds "$corpus/" 2>/dev/null || true
  echo "== $t (${FUZZ_SECONDS:-60} s)"
  "build/fuzz/fuzz/$t" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix=build/fuzz/crashes/"$t"- "$corpus" 2>&1 | grep -E '^#[0-9]+ *(DONE|pulse)|ERROR|SUMMARY|Done' | tail -n 3
done
