# any GPU (r1.sh's fallback off an H200) — issue 19: the W4A16 sweep at 2, 4 and 8 rows (factored tiles of up to 4
# rows against the engine's choice and the dequantizing kernel's tiles) on the 7B's and the 32B's layers, tables into
# $VDEPLOY_HOME; then the 7B's AWQ against bf16 at batch 1, 4 and 8 (128 / 512; the layer bias now in the kernels' store)
source "$(dirname "$0")/common.sh"
for model in r1-distill-qwen-7b r1-distill-qwen-32b; do
  el sweep-$model; timeout 110 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep --models $model \
    --sweep-m 2 4 8 --budget-s 85 --out $OUT/sweep-m-$model 2>&1 | grep -v Warn | tail -13
  mkdir -p $VDEPLOY_HOME/kernel_configs/w4a16 && cp $OUT/sweep-m-$model/tables/w4a16/*.json $VDEPLOY_HOME/kernel_configs/w4a16/ 2>/dev/null
done
python3 benchmarks/quant_configs.py /tmp/qm --models deepseek-r1-distill-qwen-7b --schemes bf16 awq > /dev/null; mkdir -p $OUT/quant
for b in 1 4 8; do for s in awq bf16; do
  el $s-b$b; timeout 60 python3 -m vdeploy bench /tmp/qm/deepseek-r1-distill-qwen-7b-$s --load-format dummy --num-prompts $b \
    --input-len 128 --output-len 512 --max-model-len 4096 -o $OUT/quant/qwen-7b-$s-b$b.json 2>&1 | grep -v Warn | tail -1
done; done
el done
