#!/usr/bin/env bash
# vdeploy's side of a same-lease comparison with vLLM 0.26 (../shared/peer-vllm/bench.sh runs vLLM's side).
# Runs on the lent GPU from the repository root; results under $OUT.
#   bash benchmarks/same_lease.sh suite|tests|tp [SEQS TOKENS]|lat|tune|profile|dstests|dsv2tp|r1tp|r1lat
# (DUMMY=normal before it: our realistic dummy weights instead of vLLM's draw, see below; TAG=_x: a suffix for the
# DeepSeek modes' file names, as the peer's bench.sh takes it)
# `tune` writes the fused-MoE tile tables into $VDEPLOY_HOME (kept on the warm machine for the later calls) and
# copies them to $OUT for committing under kernels/configs/fused_moe/.
# `tp` and `lat` use the peer bundle's model directories (/tmp/peer/models: config + the real tokenizer), so both
# engines detokenize the same vocabulary.
set -o pipefail
OUT=${OUT:-/tmp/vdeploy-out}; mkdir -p "$OUT" /tmp/shim
ln -sfn "$PWD/kernels" /tmp/shim/vdeploy_kernels && ln -sfn "$PWD/profiles" vdeploy/profiles_data
export PYTHONPATH=/tmp/shim:$PWD:/tmp/site TRITON_INTERPRET=0 PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
export VDEPLOY_HOME=${VDEPLOY_HOME:-/tmp/vdeploy-home}
REV=${VDEPLOY_GIT_REV:-unknown}
# Weights drawn as vLLM's dummy loader draws them (U(-1e-3, 1e-3)), so both engines run the same workload: with them a
# DeepSeek-V3/R1 router sends every token to the same few experts. DUMMY=normal: our realistic weights (balanced
# routing), results named *_normal.json.
DUMMY=${DUMMY:-uniform}; SFX=$([ "$DUMMY" = uniform ] || echo "_$DUMMY")
# vLLM's `bench throughput` and `bench latency` sample every request at temperature 1.0; so does vdeploy here (its
# bench default is greedy, which skips the softmax and the random draw: until 2026-12-06 our side ran greedy).
SAMPLE=(--temperature "${TEMPERATURE:-1.0}")
# WEIGHTS=random: both engines load the same random checkpoint instead (benchmarks/random_checkpoint.py writes it
# under /tmp/random/ on first use; benchmarks/peer_random_weights.sh runs vLLM on it), results named *_random.json
WEIGHTS=${WEIGHTS:-dummy}
ds_bench() {  # model-dir tag prompts in out maxlen
  local load=(--load-format dummy --dummy-weights "$DUMMY") dir="/tmp/peer/models/$1" sfx=$SFX
  if [ "$WEIGHTS" = random ]; then
    dir="/tmp/random/$1" load=(--load-format safetensors) sfx=_random
    [ -f "$dir/config.json" ] || python3 benchmarks/random_checkpoint.py "/tmp/peer/models/$1" "$dir" --device cuda
  fi
  python3 -m vdeploy bench "$dir" "${load[@]}" --num-prompts "$3" --input-len "$4" \
    --output-len "$5" --max-model-len 2048 "${SAMPLE[@]}" -o "$OUT/vdeploy_$2${TAG:-}$sfx.json" 2>&1 | grep -v Warning | tail -6
}
case "$1" in
suite) python3 benchmarks/engine/gpu_suite.py --only hardware,decode,prefill --quick --out /tmp/suite --git-rev "$REV" \
         2>&1 | grep -v Warning | tail -25; tar czf "$OUT/suite.tar.gz" -C /tmp suite ;;
tests) python3 -m pytest -q -p no:cacheprovider tests/worker/test_model_runner_cuda_worker.py \
         tests/deepseek/test_deepseek_kernels_gpu.py 2>&1 | tail -4 | tee "$OUT/gpu-tests.txt" ;;
tp) limits=(); [ -n "$2" ] && limits=(--max-num-seqs "$2" --max-num-batched-tokens "$3")  # default: the engine's
    python3 -m vdeploy bench /tmp/peer/models/qwen2-7b-dummy --load-format dummy --num-prompts 1000 --input-len 1000 \
      --output-len 1000 --max-model-len 2048 "${limits[@]}" --dummy-weights "$DUMMY" "${SAMPLE[@]}" \
      -o "$OUT/vdeploy_throughput_qwen2_7b${2:+_$2}$SFX.json" 2>&1 | grep -v Warning | tail -4 ;;
lat) python3 -m vdeploy bench /tmp/peer/models/llama31-8b-dummy --load-format dummy --num-prompts 1 --input-len 128 \
       --output-len 1024 --max-model-len 4096 --dummy-weights "$DUMMY" "${SAMPLE[@]}" -o "$OUT/vdeploy_latency_llama31_8b$SFX.json" 2>&1 | grep -v Warning | tail -4 ;;
tune) python3 benchmarks/kernels/tune_fused_moe.py --shape v2-lite --shape r1 --report "$OUT/tune_fused_moe.json" \
        2>&1 | grep -v Warning; cp "$VDEPLOY_HOME"/kernel_configs/fused_moe/*.json "$OUT/" ;;
profile) for m in v2-lite r1-8l; do
           python3 benchmarks/deepseek_kernel_profile.py --model $m --git-rev "$REV" --out "$OUT/profile_$m.json" \
             2>&1 | grep -v Warning | tail -6
         done ;;
dstests) python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py 2>&1 | tail -4 \
           | tee "$OUT/gpu-tests-deepseek.txt" ;;
dsv2tp) ds_bench dsv2-lite-dummy throughput_dsv2lite "${N:-1000}" 1000 1000 ;;
r1tp) ds_bench r1-8l-dummy throughput_r1_8l "${N:-256}" 1000 1000 ;;
r1lat) ds_bench r1-8l-dummy latency_r1_8l 1 128 1024 ;;
*) echo "unknown mode $1"; exit 2 ;;
esac
