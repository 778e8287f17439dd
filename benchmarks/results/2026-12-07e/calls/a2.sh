# second call (carries .peer/vllm026.part01). On an H200: issue 15, ours on throughput_r1_8l (256 x 1000 / 1000,
# vLLM's dummy draw, temperature 1.0; a1's config directory: no tokenizer, so no detokenizing on our side, where
# vLLM's bench detokenizes), then issue 18: R1-8L + its MTP layer, batch 1, MTP k = 1 with real drafts and a
# replayed acceptance of 0.8 against none. Off an H200, issue 18 on what an H100 holds: R1 at 7 layers (3 dense + 4
# MoE, ~51 GB) + its MTP layer (~12 GB), batch 1, MTP k = 1 and 2 (real drafts, replayed acceptance 0.8 and 1.0)
# against none (8 layers + MTP, ~75 GB, leaves no room for activations and cache on an 80 GB card); issue 14: decode
# attention's configs per batch size (1-8) for the Llama-8B and Qwen2-7B heads (decode_attention_sweep.py, new).
source "$(dirname "$0")/common.sh"; gpu
if h200; then
  el ours-r1tp; timeout 220 python3 -m vdeploy bench /tmp/r1-8l --load-format dummy --dummy-weights uniform --num-prompts 256 \
    --input-len 1000 --output-len 1000 --max-model-len 2048 --temperature 1.0 -o $OUT/vdeploy_throughput_r1_8l.json 2>&1 \
    | grep -v Warn | tail -4
  el mtp; timeout 300 python3 benchmarks/speculative_mtp.py --num-prompts 1 --ks 1 --acceptance 0.8 \
    --out $OUT/speculative-mtp.json 2>&1 | grep -v Warn | tail -16
else
  el mtp-7l; timeout 330 python3 benchmarks/speculative_mtp.py --layers 7 --num-prompts 1 --ks 1 2 --acceptance 0.8 1.0 \
    --out $OUT/speculative-mtp-7l.json 2>&1 | grep -v Warn | grep '^{"run"' | tail -12
  el decode-sweep; timeout 130 python3 benchmarks/kernels/decode_attention_sweep.py --budget-s 100 --git-rev $REV \
    --table-dir $OUT/decode-tables --out $OUT/decode_attention_sweep.json 2>&1 | grep -v Warn | tail -10
fi
pack_dirs; el done
