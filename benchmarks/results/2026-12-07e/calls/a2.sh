# second call (carries .peer/vllm026.part01). On an H200, issue 18: R1-8L + its MTP layer, batch-1 decode with MTP
# k = 1, 2, 3 against none, real drafts and replayed acceptance 0 / 0.5 / 0.8 / 1.0. Off an H200, issue 19: the
# W4A16 sweep at 8 / 16 rows on the 32B's layers, AWQ against bf16 at batch 8 and 16 (7B, with the new rows), and
# issue 14: the dense GEMV at 1-2 columns a program, M = 1.
source "$(dirname "$0")/common.sh"; gpu
if h200; then
  el mtp; timeout 420 python3 benchmarks/speculative_mtp.py --num-prompts 1 --ks 1 2 3 --acceptance 0 0.8 1.0 \
    --out $OUT/speculative-mtp.json 2>&1 | grep -v Warn | tail -25
else
  el sweep-32b; timeout 150 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep --models r1-distill-qwen-32b \
    --sweep-m 1 8 16 --budget-s 120 --out $OUT/sweep-m16-32b 2>&1 | grep -v Warn | tail -9
  mkdir -p $VDEPLOY_HOME/kernel_configs/w4a16 && cp $OUT/sweep-m16-32b/tables/w4a16/*.json $VDEPLOY_HOME/kernel_configs/w4a16/ 2>/dev/null
  python3 benchmarks/quant_configs.py /tmp/qm --models deepseek-r1-distill-qwen-7b --schemes bf16 awq > /dev/null; mkdir -p $OUT/quant
  for b in 8 16; do for s in awq bf16; do
    el $s-b$b; timeout 60 python3 -m vdeploy bench /tmp/qm/deepseek-r1-distill-qwen-7b-$s --load-format dummy --num-prompts $b \
      --input-len 128 --output-len 512 --max-model-len 4096 -o $OUT/quant/qwen-7b-$s-b$b.json 2>&1 | grep -v Warn | tail -1
  done; done
  el gemv; timeout 120 python3 benchmarks/kernels/dense_gemv_check.py --m 1 --budget-s 100 --install --git-rev $REV \
    --out $OUT/gemv 2>&1 | grep -v Warn | tail -9
fi
pack_dirs; el done
