#!/usr/bin/env bash
# Data-parallel scaling on this machine's CPU: irepa-train on Fashion-MNIST (the README's small
# iREPA SiT, online HOG targets) as 1 process at batch B and as N processes at global batch N x B
# (the same work per process), one thread per process. Prints the steady-state img/s of each
# and the scaling efficiency (N-process img/s over N x the 1-process img/s). A noisy shared VM:
# read one run's ratio, not its absolute rates.
#
#   scripts/bench-distributed.sh [build-dir] [N] [steps]      (default build/default 2 300)
set -euo pipefail
build=${1:-build/default}
n=${2:-2}
steps=${3:-300}
tool="$build/examples/irepa-train"
[ -x "$tool" ] || { echo "no $tool: build first (cmake --build --preset default)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
args="--dataset fashion-mnist --model custom --depth 4 --hidden-size 128 --num-heads 4 --patch-size 4 --num-classes 10
      --learning-rate 1e-3 --checkpointing-steps 100000 --log-every 50 --max-train-steps $steps --enc-type hog-x-g7_d32
      --encoder-depth 2 --projection-layer-type conv --spnorm-method zscore --output-dir $out --threads 1"
per=32
# img/s of the last progress line (the meter's rate since the start, warm-up included, over all ranks).
rate() { grep -o '[0-9.]* img/s' "$1" | tail -1 | cut -d' ' -f1; }
mpirun --oversubscribe -np 1 "$tool" $args --batch-size $per --exp-name one >"$out/one.log" 2>&1
mpirun --oversubscribe -np "$n" "$tool" $args --batch-size $((per * n)) --exp-name many >"$out/many.log" 2>&1
r1=$(rate "$out/one.log")
rn=$(rate "$out/many.log")
printf '%-34s %10s %10s\n' "SiT 4x128/4 + iREPA, HOG targets" "img/s" "per proc"
printf '%-34s %10.1f %10.1f\n' "1 process, batch $per" "$r1" "$r1"
printf '%-34s %10.1f %10.1f\n' "$n processes, global batch $((per * n))" "$rn" "$(awk -v a="$rn" -v b="$n" 'BEGIN{print a/b}')"
printf 'scaling efficiency (%d processes): %.2f   (%s, %s cores, %s steps)\n' "$n" "$(awk -v a="$rn" -v b="$n" -v c="$r1" 'BEGIN{print a/(b*c)}')" \
  "$(mpirun --version | head -1)" "$(nproc)" "$steps"
