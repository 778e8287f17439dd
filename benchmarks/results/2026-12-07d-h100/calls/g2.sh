# any GPU, second call (carries .peer/vllm026.part01) — issue 19: the factored W4A16 decode kernel's tiles at M = 1
# with K splits past the old cap of 32 and two deeper pipelines (w4a16_decode_timing.EXTRA_SPLITS, FACTORED_TILES),
# on the 7B's and the 32B's layers (tables installed in $VDEPLOY_HOME); then AWQ against bf16 at batch 1 on both
# (bf16 with g1's dense-GEMV tables, as shipped from this lease)
source "$(dirname "$0")/common.sh"
for model in r1-distill-qwen-7b r1-distill-qwen-32b; do
  el sweep-$model; timeout 150 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep --models $model \
    --budget-s 125 --out $OUT/sweep-$model 2>&1 | grep -v Warn | tail -5
  mkdir -p $VDEPLOY_HOME/kernel_configs/w4a16 && cp $OUT/sweep-$model/tables/w4a16/*.json $VDEPLOY_HOME/kernel_configs/w4a16/ 2>/dev/null
done
ls $VDEPLOY_HOME/kernel_configs/w4a16
python3 benchmarks/quant_configs.py /tmp/qm --models deepseek-r1-distill-qwen-7b deepseek-r1-distill-qwen-32b --schemes bf16 awq > /dev/null
mkdir -p $OUT/quant
for m in qwen-7b-awq qwen-7b-bf16 qwen-32b-awq qwen-32b-bf16; do
  el $m; timeout 80 python3 -m vdeploy bench /tmp/qm/deepseek-r1-distill-$m --load-format dummy --num-prompts 1 \
    --input-len 128 --output-len 512 --max-model-len 4096 -o $OUT/quant/$m-b1.json 2>&1 | grep -v Warn | tail -2
done
el done
