#!/usr/bin/env bash
# Everything the lent GPU is for, in one call (the device tool runs it from the repository root; results under $OUT,
# which brings back at most 8 files). Correctness first, then the benchmarks, most important first.
#   carry: [".whl"] (server/CLI wheels for the device's Python 3.12: see benchmarks/README.md)
#   VDEPLOY_GIT_REV=<rev> bash benchmarks/run_device.sh [parts...]   parts: env tests deepseek suite load v2lite serving quant quant-w4a16 quant-engine lora fp8kv mtp rope prefill-new
set -o pipefail
OUT=${OUT:-/tmp/vdeploy-device-out}
# the installed layout without installing: kernels/ is vdeploy_kernels, profiles/ is vdeploy.profiles_data
mkdir -p "$OUT" /tmp/shim && ln -sfn "$PWD/kernels" /tmp/shim/vdeploy_kernels && ln -sfn "$PWD/profiles" vdeploy/profiles_data
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/shim:$PWD:/tmp/site TRITON_INTERPRET=0 PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
export VDEPLOY_GIT_REV=${VDEPLOY_GIT_REV:-unknown}
parts=${*:-env tests deepseek suite load v2lite}
for m in deepseek-r1-distill-llama-8b deepseek-r1-distill-qwen-7b deepseek-v2-lite; do
  mkdir -p /tmp/$m && cp vdeploy/model_configs/$m.config.json /tmp/$m/config.json
done
for part in $parts; do
  echo "=== $part $(date -u +%T)"
  case $part in
    env) python3 -m vdeploy env check --json > "$OUT/env-check.json"; python3 -m vdeploy env check | tail -20 ;;
    tests) python3 -m pytest -q -p no:cacheprovider tests/worker/test_model_runner_cuda_worker.py \
             tests/deepseek/test_deepseek_kernels_gpu.py tests/models/test_quant_gpu.py 2>&1 | tail -15 | tee "$OUT/gpu-tests.txt" ;;
    deepseek) python3 benchmarks/deepseek_r1_layers.py --moe-layers 4 --out "$OUT/deepseek-r1-layers.json" ;;
    suite) python3 benchmarks/engine/gpu_suite.py --out /tmp/suite --quick --budget-s "${SUITE_BUDGET_S:-240}" \
             --git-rev "$VDEPLOY_GIT_REV"; tar czf "$OUT/engine-suite.tar.gz" -C /tmp suite ;;
    serving) python3 benchmarks/engine/gpu_suite.py --out /tmp/serving --only serving --quick \
               --git-rev "$VDEPLOY_GIT_REV"; tar czf "$OUT/serving.tar.gz" -C /tmp serving ;;
    load) python3 benchmarks/load_time.py --config deepseek-r1-distill-qwen-7b --dir /tmp/vdeploy-load-7b --write \
            --tp 1 2 4 --device cuda --drop-caches --verify --git-rev "$VDEPLOY_GIT_REV" --out "$OUT/load-time.json" ;;
    v2lite) python3 -m vdeploy bench /tmp/deepseek-v2-lite --load-format dummy --num-prompts 1 --input-len 128 \
              --output-len 256 --json -o "$OUT/v2lite-single.json" | tail -3
            python3 -m vdeploy bench /tmp/deepseek-v2-lite --load-format dummy --num-prompts 128 --input-len 512 \
              --output-len 256 --json -o "$OUT/v2lite-throughput.json" | tail -3 ;;
    quant) python3 benchmarks/kernels/quant_gemm_check.py --out "$OUT" --git-rev "$VDEPLOY_GIT_REV" --sweep | tail -60 ;;
    # W4A16 decode, old default vs new default vs bf16 as CUDA graphs (~60 s): writes $OUT/w4a16_decode.json
    quant-w4a16) python3 benchmarks/kernels/quant_gemm_check.py --w4a16-only --m 1 4 16 --out "$OUT" \
                   --git-rev "$VDEPLOY_GIT_REV" | tail -60 ;;
    quant-engine)  # W4A16 decode (batch 1, 256 sequences) and W8A8 prefill against bf16, dummy weights
      python3 benchmarks/quant_configs.py /tmp/qm > /dev/null; mkdir -p /tmp/qe
      bench() { python3 -m vdeploy bench "/tmp/qm/$1" --load-format dummy --json -o "/tmp/qe/$1-$2.json" "${@:3}" | tail -2; }
      for m in deepseek-r1-distill-qwen-7b-bf16 deepseek-r1-distill-qwen-7b-awq deepseek-r1-distill-qwen-7b-gptq \
               deepseek-r1-distill-qwen-32b-bf16 deepseek-r1-distill-qwen-32b-awq; do
        bench $m b1 --num-prompts 1 --input-len 128 --output-len 256
        bench $m b256 --num-prompts 256 --input-len 512 --output-len 256 --max-model-len 4096
      done
      for m in deepseek-r1-distill-qwen-7b-bf16 deepseek-r1-distill-qwen-7b-int8 deepseek-r1-distill-qwen-7b-fp8; do
        bench $m prefill --num-prompts 64 --input-len 2048 --output-len 1 --max-model-len 4096
      done
      tar czf "$OUT/quant-engine.tar.gz" -C /tmp qe ;;
    lora) python3 benchmarks/kernels/lora_check.py --out "$OUT/lora-check.json" | tail -20 ;;
    fp8kv) python3 benchmarks/kernels/fp8_kv_check.py --out "$OUT/fp8-kv-check.json" | tail -30 ;;
    # issue 14: the fused rotary + cache store vs the two kernels (< 60 s), the fresh prefill kernel's new options (~100 s)
    rope) python3 benchmarks/kernels/rope_store_check.py --out "$OUT/rope-store-check.json" | tail -20 ;;
    prefill-new) python3 benchmarks/kernels/prefill_attention_sweep.py --new-options --budget-s 100 \
                   --table-dir "$OUT/tables" --out "$OUT/prefill-sweep-new.json" | tail -40 ;;
    # R1 at 8 layers + the MTP layer is ~75 GB of weights: an H200 (an 80 GB H100 leaves no room for the cache)
    mtp) python3 benchmarks/speculative_mtp.py --out "$OUT/speculative-mtp.json" | tail -20 ;;
  esac
done
echo "=== done $(date -u +%T)"
