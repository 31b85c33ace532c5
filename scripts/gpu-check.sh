#!/usr/bin/env bash
# The GPU check, run on a machine with an NVIDIA GPU (an H100 by default): builds the CUDA
# targets with -arch=sm_90, runs the CUDA tests (ctest label "cuda") and the benchmarks, and
# prints a short table last. Usage: scripts/gpu-check.sh [build-dir] (default build/gpu).
# Needs cmake, ninja, nvcc, Eigen, fmt, nlohmann-json, Catch2 v2 and Google Benchmark.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/gpu}
arch=${IREPA_CUDA_ARCH:-90}
log=$(mktemp -d)
status=()

step() {  # step NAME CMD...: runs CMD, records pass/fail and the seconds it took
  local name=$1; shift
  local t0=$SECONDS
  if "$@" >"$log/$name.log" 2>&1; then status+=("$name|ok|$((SECONDS - t0))s"); else
    status+=("$name|FAILED (see below)|$((SECONDS - t0))s"); echo "== $name failed; last lines:"; tail -n 40 "$log/$name.log"; fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
step configure cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIREPA_ENABLE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DIREPA_BUILD_EXAMPLES=OFF
step build cmake --build "$build"
step cuda-tests ctest --test-dir "$build" -L cuda --output-on-failure
step bench-ops "$build/benchmarks/irepa-bench-ops" --benchmark_min_time=0.2 --benchmark_format=csv \
  --benchmark_filter='linear|attention|conv'

echo
echo "| step | result | time |"
echo "|---|---|---|"
for s in "${status[@]}"; do IFS='|' read -r a b c <<<"$s"; echo "| $a | $b | $c |"; done
if [ -s "$log/bench-ops.log" ]; then
  echo
  echo "| benchmark (CPU ops on the GPU host) | ms | GFLOP/s |"
  echo "|---|---|---|"
  grep -E '^"' "$log/bench-ops.log" | awk -F, '{gsub(/"/, "", $1); printf "| %s | %.3f | %.1f |\n", $1, $3, $11}'
fi
for s in "${status[@]}"; do [[ $s == *FAILED* ]] && exit 1; done
exit 0
