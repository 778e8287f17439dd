# for the next lease (not run in this session) — any GPU, carry: nothing. Issue 19: the W4A16 sweep at 8 and 16 rows
# with the factored kernel's tensor-core tiles (w4a16_decode_timing.DOT_TILES) against the dequantizing kernel the
# engine runs there (AWQ at batch 8 0.80x bf16 in lease 3), then AWQ against bf16 at batch 8 and 16 with the rows.
# Issue 14: the dense GEMV at 1-2 columns a program (the winners sat at the grid's edge, 4), M = 1.
source "$(dirname "$0")/common.sh"; gpu
for model in r1-distill-qwen-7b r1-distill-qwen-32b; do
  el sweep-$model; timeout 110 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep --models $model \
    --sweep-m 8 16 --budget-s 85 --out $OUT/sweep-m16-$model 2>&1 | grep -v Warn | tail -9
  mkdir -p $VDEPLOY_HOME/kernel_configs/w4a16 && cp $OUT/sweep-m16-$model/tables/w4a16/*.json $VDEPLOY_HOME/kernel_configs/w4a16/ 2>/dev/null
done
python3 benchmarks/quant_configs.py /tmp/qm --models deepseek-r1-distill-qwen-7b --schemes bf16 awq > /dev/null; mkdir -p $OUT/quant
for b in 8 16; do for s in awq bf16; do
  el $s-b$b; timeout 60 python3 -m vdeploy bench /tmp/qm/deepseek-r1-distill-qwen-7b-$s --load-format dummy --num-prompts $b \
    --input-len 128 --output-len 512 --max-model-len 4096 -o $OUT/quant/qwen-7b-$s-b$b.json 2>&1 | grep -v Warn | tail -1
done; done
el gemv; timeout 120 python3 benchmarks/kernels/dense_gemv_check.py --m 1 --budget-s 100 --install --git-rev $REV \
  --out $OUT/gemv 2>&1 | grep -v Warn | tail -9
el done
