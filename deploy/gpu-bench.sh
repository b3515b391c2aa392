#!/usr/bin/env bash
# The full-size benchmark on a GPU, in one command (docs/full-size.md, "On a GPU"):
#
#   bash deploy/gpu-bench.sh [SIZE] [PRECISION]        defaults: 512 fp16
#
# On a host with an NVIDIA driver (nvidia-smi), CUDA 12 with cuDNN 9, Node >= 20, Redis at
# REDIS_URL (default 127.0.0.1:6379), and a Python with torch and onnx (DIFFID_PYTHON; a CUDA
# build of torch times torch's U-Net step on the GPU too), from a checkout:
#   1. installs the dependencies if needed and fetches onnxruntime-node's CUDA provider
#      (ONNXRUNTIME_NODE_INSTALL=cuda12; CPU installs skip it);
#   2. builds the full-size bundle into var/full-SIZE-PRECISION once (about 4 minutes);
#   3. runs `npm run bench -- --full` with DIFFID_EXECUTION_PROVIDER=cuda, sampling the GPU's
#      memory with nvidia-smi meanwhile;
#   4. leaves var/gpu-bench-SIZE-PRECISION.json (the figures, the GPU and its peak memory) and the
#      Markdown of the figures in docs/benchmarks.md's full-SIZE section.
set -euo pipefail
SIZE="${1:-512}"
PRECISION="${2:-fp16}"
cd "$(dirname "$0")/.."

command -v nvidia-smi >/dev/null || { echo "gpu-bench: no nvidia-smi: this host has no NVIDIA driver" >&2; exit 1; }
[ -d node_modules ] || npm ci --no-audit --no-fund
ORT=node_modules/onnxruntime-node
if ! ls "$ORT"/bin/napi-v*/linux/x64/libonnxruntime_providers_cuda.so >/dev/null 2>&1; then
  echo "gpu-bench: fetching onnxruntime-node's CUDA provider" >&2
  ONNXRUNTIME_NODE_INSTALL=cuda12 node "$ORT/script/install"
fi

BUNDLE="var/full-$SIZE-$PRECISION"
if [ ! -f "$BUNDLE/manifest.json" ]; then
  rm -rf "$BUNDLE"
  npm run bundle -- --kind full --out "$BUNDLE" --size "$SIZE" --precision "$PRECISION"
fi

OUT="var/gpu-bench-$SIZE-$PRECISION"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits --id=0 -lms 250 > "$OUT.memory" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null || true' EXIT
DIFFID_EXECUTION_PROVIDER=cuda npm run bench --silent -- --full "$BUNDLE" 2> "$OUT.log"
kill $SAMPLER 2>/dev/null || true

GPU="$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader --id=0)"
PEAK="$(sort -n "$OUT.memory" | tail -1)"
# The bench logged its figures as one JSON line ("bench: {...}"); add the GPU to them.
grep -o 'bench: {.*}' "$OUT.log" | tail -1 | sed 's/^bench: //' |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);r.gpu={name:process.argv[1],peak_memory_used_mib:Number(process.argv[2])};console.log(JSON.stringify(r,null,2))})' "$GPU" "$PEAK" > "$OUT.json"
echo "gpu-bench: $GPU, peak $PEAK MiB used; figures in $OUT.json and docs/benchmarks.md" >&2
