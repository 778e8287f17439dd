# any GPU. carry: nothing — issue 19: the factored W4A16 decode kernel's tiles and K splits at M = 1 on the 7B's
# layers (CUDA graphs over weight copies cycled past the L2, the shipped tile first); tables where a tile wins by
# >= 1.05x land in $OUT/tables/w4a16/ and in $VDEPLOY_HOME (this machine's later runs read them); then the W4A16
# pair end to end (bf16, AWQ; R1-Distill-Qwen-7B shape, dummy weights, 128 in / 512 out) with those tables
source "$(dirname "$0")/common.sh"; gpu
el sweep; timeout 170 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep --models r1-distill-qwen-7b \
  --budget-s 140 --out $OUT 2>&1 | grep -v Warn | tail -10
mkdir -p $VDEPLOY_HOME/kernel_configs/w4a16 && cp $OUT/tables/w4a16/*.json $VDEPLOY_HOME/kernel_configs/w4a16/ 2>/dev/null; ls $VDEPLOY_HOME/kernel_configs/w4a16
python3 benchmarks/quant_configs.py /tmp/qm --schemes bf16 awq > /dev/null; mkdir -p $OUT/quant
for m in bf16 awq; do
  el $m; timeout 90 python3 -m vdeploy bench /tmp/qm/deepseek-r1-distill-qwen-7b-$m --load-format dummy --num-prompts 1 \
    --input-len 128 --output-len 512 --max-model-len 4096 -o $OUT/quant/qwen7b-$m-b1.json 2>&1 | grep -v Warn | tail -2
done
el done
