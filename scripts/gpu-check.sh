#!/usr/bin/env bash
# The GPU check, in two halves, because the GPU machine has CUDA but not our Debian packages:
#
#   scripts/gpu-check.sh build [bundle]   here (nvcc, no GPU needed): configures build/gpu with
#       -DCMAKE_CUDA_ARCHITECTURES=${IREPA_CUDA_ARCH:-90} (H100), builds every CUDA test and the
#       benchmarks, and copies them with the non-CUDA shared libraries they need into a bundle
#       folder (default build/gpu-bundle: one bundle.tar.xz of about 31 MiB, 63 MiB unpacked, half of
#       it golden files; with the tracked tree it must stay under the device tool's 64 MiB, which
#       the build step checks; the run step unpacks it).
#   scripts/gpu-check.sh run [bundle]     on the GPU machine: runs every CUDA test (test_cuda_core,
#       test_cuda_ops, test_cuda_sit, test_cuda_encoders, test_cuda_vae, test_cuda_inception,
#       test_cuda_nccl: NCCL on 1 GPU, or 2 processes with torchrun's variables on 2) and the benchmarks from the bundle (irepa-bench-cuda-ops: our
#       CUDA ops next to cuBLAS's bf16 GEMM ceiling; irepa-bench-train-cuda: the SiT-B/2 batch 256
#       and SiT-XL/2 batch 128 train steps, FP32 with materialised attention and bf16 products
#       with the fused attention kernels; irepa-bench-encoder --device cuda: DINOv2-B/14 at batch
#       256, FP32 and bf16 + fused attention, and HOG, VGG16, SAM-B, SAM2-S; irepa-bench-vae --device
#       cuda: the SD-VAE's encode and decode at 256 px in FP32, TF32 and bf16 products, and irepa-encode
#       --device cuda over 512 random images; irepa-bench-inception --device cuda (the FID
#       Inception-v3, FP32, batch 200) and irepa-eval --device cuda on two random 256 px npz
#       batches; irepa-train-jit --device cuda --online_eval (FID / IS of 100 samples); irepa-train-jit --device cuda with an online
#       dinov2-vit-b target of random weights on random 3x256x256 image shards, whose log must say
#       the encoder runs on cuda), then the same in PyTorch (eager float, and
#       torch.compile with bf16 autocast: DESIGN.md's anchors) when python3 has torch with CUDA,
#       and prints the tables last (exit 1 when a test fails).
#
# With the device tool: build here, then run with carry ["build/gpu-bundle"] and the command
# "scripts/gpu-check.sh run".
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
bundle=${2:-build/gpu-bundle}

case "$mode" in
build)
  set -e
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DIREPA_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${IREPA_CUDA_ARCH:-90}" -DIREPA_BUILD_EXAMPLES=ON \
    -DIREPA_ARCH_FLAGS=-march=x86-64-v3 >/dev/null  # portable: the GPU host is another CPU
  # What the run uses (of the examples only irepa-train-jit), not every target.
  cmake --build build/gpu --target test_cuda_core test_cuda_ops test_cuda_sit test_cuda_encoders test_cuda_vae test_cuda_inception \
    irepa-bench-cuda-ops irepa-bench-train-cuda irepa-bench-encoder irepa-bench-ops irepa-bench-vae irepa-bench-inception irepa-train-jit \
    irepa-encode irepa-eval
  rm -rf "$bundle" && mkdir -p "$bundle/tests" "$bundle/bench" "$bundle/lib" "$bundle/golden"
  cp build/gpu/tests/cuda/test_cuda_* "$bundle/tests/"
  # The golden files test_cuda_sit and test_cuda_encoders run on the GPU (the GPU machine may not
  # have ../shared). Of the ViT files, the three that cover every path the others take (registers;
  # storage tokens, half-split RoPE and the masked key bias; PE's class token, interleaved RoPE and
  # LayerScale): the bundle, with the working tree, must stay under the device tool's 64 MiB.
  g="${IREPA_GOLDEN_DIR:-../shared/golden}"
  cp "$g"/{sit,jit}_*.safetensors "$g"/samplers_sit.safetensors tests/data/golden/sit_*.safetensors \
    "$g"/encoder_dinov2_tiny_reg4.safetensors "$g"/encoder_dinov3_tiny.safetensors "$g"/encoder_pe_tiny_cls_ls.safetensors \
    "$g"/encoder_hog_g8_d32.safetensors tests/data/golden/encoder_sam2_tiny.safetensors \
    "$bundle/golden/"
  # Not the SD-VAE's golden file (19 MB packed would pass the carry limit) nor the Inception's
  # (95 MB): test_cuda_vae and test_cuda_inception check the GPU networks against the CPU double
  # path, which matches those files to ~1e-14.
  for b in irepa-bench-cuda-ops irepa-bench-train-cuda irepa-bench-encoder irepa-bench-ops irepa-bench-vae irepa-bench-inception; do  # the ones run below
    cp "build/gpu/benchmarks/$b" "$bundle/bench/"
  done
  cp build/gpu/examples/irepa-train-jit build/gpu/examples/irepa-encode build/gpu/examples/irepa-eval "$bundle/bench/"
  strip --strip-unneeded "$bundle"/tests/* "$bundle"/bench/*
  # Shared libraries from Debian that the GPU machine's Ubuntu may lack (CUDA's own come from there).
  for f in "$bundle"/tests/* "$bundle"/bench/*; do
    ldd "$f" | awk '/=> \// {print $3}' | grep -E 'libfmt|libbenchmark|libyaml|libpng|libturbojpeg|libz\.|libplplot|libcsirocsa|libqsastime|libltdl|libmpi|libopen-rte|libopen-pal|libhwloc|libevent' || true
  done | sort -u | xargs -r -I{} cp -L {} "$bundle/lib/"
  du -sh "$bundle"
  # Packed into one .tar.xz: the binaries compress about 3x (the golden files hardly), which keeps
  # the carry under the limit (unpacked, the bundle is about 63 MiB); the run step unpacks it.
  tar -cf - -C "$bundle" tests bench lib golden | xz -T0 -6 >"$bundle.tar.xz.tmp"
  rm -rf "$bundle" && mkdir -p "$bundle" && mv "$bundle.tar.xz.tmp" "$bundle/bundle.tar.xz"
  du -sh "$bundle/bundle.tar.xz"
  tree_mib=$(( ($(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) + $(du -sb "$bundle" | cut -f1)) / 1048576 ))
  echo "what a run carries: the tracked tree and the bundle, ${tree_mib} MiB (the device tool's limit: 64 MiB)"
  [ "$tree_mib" -lt 64 ] || { echo "over the device tool's 64 MiB: trim the bundle" >&2; exit 1; }
  ;;
run)
  if [ -f "$bundle/bundle.tar.xz" ]; then  # the build step's packed bundle: unpack it beside the run
    unpacked=$(mktemp -d)
    if command -v xz >/dev/null; then tar -xJf "$bundle/bundle.tar.xz" -C "$unpacked"
    else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle/bundle.tar.xz" "$unpacked"; fi
    bundle=$unpacked
  fi
  bundle=$(cd "$bundle" && pwd)
  export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  log=$(mktemp -d)
  status=()
  step() {  # step NAME CMD...: runs CMD, records pass/fail and the seconds it took
    local name=$1; shift
    local t0=$SECONDS
    if "$@" >"$log/$name.log" 2>&1; then status+=("$name|ok|$((SECONDS - t0))s"); else
      status+=("$name|FAILED|$((SECONDS - t0))s"); fi
    echo "== $name"; tail -n 30 "$log/$name.log"
  }
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
  for t in "$bundle"/tests/*; do
    case "$(basename "$t")" in
      test_cuda_sit | test_cuda_encoders | test_cuda_vae | test_cuda_inception) step "$(basename "$t")" "$t" "$bundle/golden" ;;
      *) step "$(basename "$t")" "$t" ;;
    esac
  done
  [ -x "$bundle/bench/irepa-bench-cuda-ops" ] && step bench-cuda-ops "$bundle/bench/irepa-bench-cuda-ops" --batch 256 --reps 20
  if [ -x "$bundle/bench/irepa-bench-train-cuda" ]; then
    tb="$bundle/bench/irepa-bench-train-cuda"
    step train-B2-ours "$tb" --model SiT-B/2 --batch-size 256 --steps 10
    step train-B2-ours-bf16-fused "$tb" --model SiT-B/2 --batch-size 256 --steps 10 --precision bf16 --attention fused
    step train-XL2-ours "$tb" --model SiT-XL/2 --batch-size 128 --steps 5
    step train-XL2-ours-bf16-fused "$tb" --model SiT-XL/2 --batch-size 128 --steps 5 --precision bf16 --attention fused
  fi
  if [ -x "$bundle/bench/irepa-bench-encoder" ]; then  # DINOv2-B/14 at batch 256 (the anchor: 5,700 img/s on an H100)
    be="$bundle/bench/irepa-bench-encoder"
    step encoder-ours "$be" --device cuda --encoder dinov2-vit-b --batch-size 256 --steps 10
    step encoder-ours-bf16-fused "$be" --device cuda --encoder dinov2-vit-b --batch-size 256 --steps 10 --precision bf16 --attention fused
    step encoder-ours-hog "$be" --device cuda --encoder hog-x-g16_d128 --batch-size 256 --steps 10
    step encoder-ours-vgg "$be" --device cuda --encoder vgg-cnn-16 --batch-size 64 --steps 5 --precision tf32
    step encoder-ours-sam "$be" --device cuda --encoder sam-vit-b --batch-size 16 --steps 3 --precision tf32
    step encoder-ours-sam2 "$be" --device cuda --encoder sam2-vit-s --batch-size 64 --steps 3 --precision tf32
  fi
  if [ -x "$bundle/bench/irepa-bench-vae" ]; then  # the SD-VAE (VAE_F8D4, random weights) at 256 px
    bv="$bundle/bench/irepa-bench-vae"
    step vae-ours "$bv" --device cuda --batch-size 64 --resolution 256 --steps 5 --precision fp32
    step vae-ours-tf32 "$bv" --device cuda --batch-size 64 --resolution 256 --steps 5 --precision tf32
    step vae-ours-bf16 "$bv" --device cuda --batch-size 64 --resolution 256 --steps 5 --precision bf16
    if [ -x "$bundle/bench/irepa-encode" ]; then  # irepa-encode on the GPU: 512 random 256 px images, random VAE_F8D4 weights
      ve=$(mktemp -d)
      step encode-setup bash -c "python3 scripts/random_image_shard.py $ve/img --count 512 && $bv --save-random $ve/vae.safetensors"
      step encode-cuda "$bundle/bench/irepa-encode" encode --source "$ve/img" --dest "$ve/post" --vae "$ve/vae.safetensors" \
        --device cuda --batch-size 64 --shard-size 256 --precision tf32 --threads 8
      step encode-finished grep -q "finished, 512 images in 2 shards" "$log/encode-cuda.log"
    fi
  fi
  if [ -x "$bundle/bench/irepa-bench-inception" ]; then  # the FID Inception-v3 (random weights), FP32 products
    step inception-ours "$bundle/bench/irepa-bench-inception" --device cuda --batch-size 200 --resolution 256 --steps 5
    if [ -x "$bundle/bench/irepa-eval" ]; then  # irepa-eval on the GPU: 500 + 500 random 256 px images
      ie=$(mktemp -d)
      step eval-setup python3 -c "import numpy as np; r = np.random.default_rng(0)
for n in ('ref', 'sample'): np.savez('$ie/' + n + '.npz', arr_0=r.integers(0, 256, (500, 256, 256, 3), dtype=np.uint8))"
      step eval-cuda "$bundle/bench/irepa-eval" "$ie/ref.npz" "$ie/sample.npz" --inception random:1 --device cuda --batch-size 100 \
        --json "$ie/eval.json"
      step eval-cpu-vs-cuda-table grep -q "Precision" "$log/eval-cuda.log"
    fi
  fi
  if [ -x "$bundle/bench/irepa-train-jit" ] && [ -x "$bundle/bench/irepa-bench-encoder" ]; then
    # An online DINOv2-B target on the GPU inside the trainer: random weights under the released
    # names, random uint8 images (the speed and placement do not depend on either).
    od=$(mktemp -d)
    step online-setup bash -c "python3 scripts/random_image_shard.py $od/shards --count 256 && mkdir -p $od/enc && \
      $bundle/bench/irepa-bench-encoder --encoder dinov2-vit-b --save-random $od/enc/dinov2-vit-b.safetensors"
    step train-jit-online-dinov2 "$bundle/bench/irepa-train-jit" --device cuda --matmul_precision bf16 --attention fused \
      --dataset shards --data_path "$od/shards" --model JiT-B/16 --config configs/jit_irepa.yaml --enc_type dinov2-vit-b \
      --encoder_dir "$od/enc" --batch_size 64 --max_train_steps 20 --log_freq 5 --output_dir "$od/runs"
    step online-encoder-on-gpu grep -q "target encoders: dinov2-vit-b on cuda" "$log/train-jit-online-dinov2.log"
    # --online_eval on the GPU: 100 class-balanced samples through the JiT sampler and the FID
    # Inception (random weights) after the last step; FID / IS logged.
    step online-eval-setup bash -c "python3 scripts/random_image_shard.py $od/shards10 --count 64 --classes 10 && python3 -c \"import numpy as np
np.savez('$od/stats.npz', mu=np.random.default_rng(0).random(2048) * 0.5, sigma=np.eye(2048) * 0.01)\""
    step train-jit-online-eval "$bundle/bench/irepa-train-jit" --device cuda --dataset shards --data_path "$od/shards10" --model JiT-B/16 \
      --class_num 10 --batch_size 32 --max_train_steps 4 --log_freq 2 --output_dir "$od/runs" --exp_name eval --online_eval \
      --num_images 100 --gen_bsz 50 --num_sampling_steps 5 --cfg 2.0 --inception random:1 --fid_stats "$od/stats.npz"
    step online-eval-logged grep -q '"fid_cfg2.0_res256"' "$od/runs/eval/log.jsonl"
  fi
  if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    tv=benchmarks/reference/vit_forward_torch.py
    step encoder-torch-float timeout 120 python3 $tv --device cuda --batch-size 256 --steps 10
    step encoder-torch-compile timeout 240 python3 $tv --device cuda --batch-size 256 --steps 10 --bf16 --compile
    ts=benchmarks/reference/sit_step_torch.py
    step train-B2-torch-float timeout 120 python3 $ts --device cuda --model B/2 --batch 256 --steps 5
    step train-B2-torch-compile timeout 240 python3 $ts --device cuda --compile --bf16 --model B/2 --batch 256 --steps 10
    step train-XL2-torch-compile timeout 300 python3 $ts --device cuda --compile --bf16 --model XL/2 --batch 128 --steps 5
    tva=benchmarks/reference/vae_torch.py
    step vae-torch timeout 180 python3 $tva --device cuda --batch-size 64 --resolution 256 --steps 5
    step vae-torch-tf32 timeout 180 python3 $tva --device cuda --batch-size 64 --resolution 256 --steps 5 --tf32
    step inception-torch timeout 180 python3 benchmarks/reference/inception_torch.py --device cuda --batch-size 200 --resolution 256 --steps 5
  fi
  [ -x "$bundle/bench/irepa-bench-ops" ] && step bench-ops "$bundle/bench/irepa-bench-ops" --benchmark_min_time=0.2 \
    --benchmark_filter='linear|attention' --threads 16
  if [ -f "$log/bench-cuda-ops.log" ]; then echo; echo "== CUDA ops (irepa-bench-cuda-ops)"; cat "$log/bench-cuda-ops.log"; fi
  echo; echo "== target encoders on the GPU: DINOv2-B/14 at batch 256, ours and PyTorch; HOG, VGG16 pool4, SAM-B and SAM2-S, ours"
  for f in "$log"/encoder-*.log; do [ -f "$f" ] && grep -h '^|' "$f"; done
  echo; echo "== SD-VAE encode / decode at 256 px, batch 64, ours and PyTorch"
  for f in "$log"/vae-*.log; do [ -f "$f" ] && grep -h '^|' "$f"; done
  [ -f "$log/encode-cuda.log" ] && tr '\r' '\n' <"$log/encode-cuda.log" | grep -E 'img/s|finished' | tail -n 2
  echo; echo "== FID Inception-v3 at batch 200 (256 px inputs), ours and PyTorch; irepa-eval on the GPU"
  for f in "$log"/inception-*.log; do [ -f "$f" ] && grep -h '^|' "$f"; done
  [ -f "$log/eval-cuda.log" ] && tr '\r' '\n' <"$log/eval-cuda.log" | grep -E '/s|Inception Score|FID|Precision|Recall' | tail -n 8
  echo; echo "== train step, ours (float storage; FP32 or bf16 products) and PyTorch"
  for f in "$log"/train-[BX]*.log; do [ -f "$f" ] && grep -h '^|\|train_step\|^device' "$f"; done
  if [ -f "$log/train-jit-online-dinov2.log" ]; then
    echo; echo "== irepa-train-jit --device cuda, JiT-B/16 batch 64 with an online dinov2-vit-b target"
    grep -h 'target encoders\|step\|img/s' "$log/train-jit-online-dinov2.log" | tail -n 8
  fi
  if [ -f "$log/train-jit-online-eval.log" ]; then
    echo; echo "== irepa-train-jit --device cuda --online_eval: 100 samples (5 Heun steps) and the FID Inception, random weights"
    grep -h 'online evaluation\|FID' "$log/train-jit-online-eval.log" | tail -n 3
  fi
  echo
  echo "| step | result | time |"
  echo "|---|---|---|"
  for s in "${status[@]}"; do IFS='|' read -r a b c <<<"$s"; echo "| $a | $b | $c |"; done
  for s in "${status[@]}"; do [[ $s == *FAILED* ]] && exit 1; done
  exit 0
  ;;
*)
  echo "usage: $0 build|run [bundle-dir]" >&2
  exit 2
  ;;
esac
