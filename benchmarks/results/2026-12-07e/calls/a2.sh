# second call (carries .peer/vllm026.part01). On an H200: issue 15, ours on throughput_r1_8l (256 x 1000 / 1000,
# vLLM's dummy draw, temperature 1.0; a1's config directory: no tokenizer, so no detokenizing on our side, where
# vLLM's bench detokenizes), then issue 18: R1-8L + its MTP layer, batch 1, MTP k = 1 with real drafts and a
# replayed acceptance of 0.8 against none. Off an H200, issue 19: AWQ against bf16 (7B, 128 / 512) at batch 8 and 16
# with a1's new rows, and AWQ at batch 1 (with the rows, if the tensor-core tiles won there).
source "$(dirname "$0")/common.sh"; gpu
if h200; then
  el ours-r1tp; timeout 220 python3 -m vdeploy bench /tmp/r1-8l --load-format dummy --dummy-weights uniform --num-prompts 256 \
    --input-len 1000 --output-len 1000 --max-model-len 2048 --temperature 1.0 -o $OUT/vdeploy_throughput_r1_8l.json 2>&1 \
    | grep -v Warn | tail -4
  el mtp; timeout 300 python3 benchmarks/speculative_mtp.py --num-prompts 1 --ks 1 --acceptance 0.8 \
    --out $OUT/speculative-mtp.json 2>&1 | grep -v Warn | tail -16
else
  python3 benchmarks/quant_configs.py /tmp/qm --models deepseek-r1-distill-qwen-7b --schemes bf16 awq > /dev/null; mkdir -p $OUT/quant
  for run in awq-1 awq-8 bf16-8 awq-16 bf16-16; do s=${run%-*}; b=${run#*-}
    el $s-b$b; timeout 60 python3 -m vdeploy bench /tmp/qm/deepseek-r1-distill-qwen-7b-$s --load-format dummy --num-prompts $b \
      --input-len 128 --output-len 512 --max-model-len 4096 -o $OUT/quant/qwen-7b-$s-b$b.json 2>&1 | grep -v Warn | tail -1
  done
fi
pack_dirs; el done
