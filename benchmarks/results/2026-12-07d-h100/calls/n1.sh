# for the next lease (not run in this one) — carry: nothing. Issue 19: change 40 (W4A16 at M > 16 dequantizes the
# weight, then cuBLAS): per layer against the in-register dequantizing kernel and bf16 at M 16-4,096, then AWQ against
# bf16 at 256 sequences end to end (0.38x bf16 in this lease), the R1-Distill-Qwen-7B shape, dummy weights. First,
# issue 14: decode attention as kept after change 38's revert (one split writes its output; no merge launch for a
# one-split batch) against the kernel before change 38 (base_decode_attention.py)
source "$(dirname "$0")/common.sh"; gpu
el decode-attention-ab; timeout 90 python3 benchmarks/kernels/decode_attention_ab.py --baseline "$(dirname "$0")/../../2026-12-07c-h100/calls/base_decode_attention.py" \
  --git-rev $REV --out $OUT 2>&1 | grep -v Warn | tail -10
el layers; timeout 150 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-only --models r1-distill-qwen-7b r1-distill-qwen-32b \
  --m 16 64 256 4096 --budget-s 120 --out $OUT 2>&1 | grep -v Warn | tail -34
python3 benchmarks/quant_configs.py /tmp/qm --schemes bf16 awq gptq > /dev/null; mkdir -p $OUT/quant
for m in awq gptq bf16; do
  el $m-256; timeout 110 python3 -m vdeploy bench /tmp/qm/deepseek-r1-distill-qwen-7b-$m --load-format dummy --num-prompts 256 \
    --input-len 512 --output-len 256 --max-model-len 2048 -o $OUT/quant/qwen7b-$m-256.json 2>&1 | grep -v Warn | tail -3
done
el done
