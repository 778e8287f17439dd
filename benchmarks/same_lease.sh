#!/usr/bin/env bash
# vdeploy's side of a same-lease comparison with vLLM 0.26 (../shared/peer-vllm/bench.sh runs vLLM's side).
# Runs on the lent GPU from the repository root; results under $OUT.
#   bash benchmarks/same_lease.sh suite|tests|tp [SEQS TOKENS]|lat
# `tp` and `lat` use the peer bundle's model directories (/tmp/peer/models: config + the real tokenizer), so both
# engines detokenize the same vocabulary.
set -o pipefail
OUT=${OUT:-/tmp/vdeploy-out}; mkdir -p "$OUT" /tmp/shim
ln -sfn "$PWD/kernels" /tmp/shim/vdeploy_kernels && ln -sfn "$PWD/profiles" vdeploy/profiles_data
export PYTHONPATH=/tmp/shim:$PWD:/tmp/site TRITON_INTERPRET=0 PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
REV=${VDEPLOY_GIT_REV:-unknown}
case "$1" in
suite) python3 benchmarks/engine/gpu_suite.py --only hardware,decode,prefill --quick --out /tmp/suite --git-rev "$REV" \
         2>&1 | grep -v Warning | tail -25; tar czf "$OUT/suite.tar.gz" -C /tmp suite ;;
tests) python3 -m pytest -q -p no:cacheprovider tests/worker/test_model_runner_cuda_worker.py \
         tests/deepseek/test_deepseek_kernels_gpu.py 2>&1 | tail -4 | tee "$OUT/gpu-tests.txt" ;;
tp) seqs=${2:-256}; tokens=${3:-8192}
    python3 -m vdeploy bench /tmp/peer/models/qwen2-7b-dummy --load-format dummy --num-prompts 1000 --input-len 1000 \
      --output-len 1000 --max-model-len 2048 --max-num-seqs "$seqs" --max-num-batched-tokens "$tokens" \
      -o "$OUT/vdeploy_throughput_qwen2_7b_${seqs}.json" 2>&1 | grep -v Warning | tail -4 ;;
lat) python3 -m vdeploy bench /tmp/peer/models/llama31-8b-dummy --load-format dummy --num-prompts 1 --input-len 128 \
       --output-len 1024 --max-model-len 4096 -o "$OUT/vdeploy_latency_llama31_8b.json" 2>&1 | grep -v Warning | tail -4 ;;
*) echo "unknown mode $1"; exit 2 ;;
esac
