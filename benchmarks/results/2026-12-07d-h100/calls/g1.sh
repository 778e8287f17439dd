# any GPU, first call of the second lease (carries .peer/vllm026.part00 + .sha256) — issue 14: the dense decode GEMV
# against cuBLAS at Llama-3.1-8B's and Qwen2-7B's decode shapes (M 1 / 2 / 4; tables installed in $VDEPLOY_HOME for
# this machine's later calls), then batch-1 decode end to end with the tables and without (an empty home: cuBLAS
# everywhere), 128 in / 1024 out at temperature 1.0 as decode_8b runs; then the Llama step profile with the tables
source "$(dirname "$0")/common.sh"; gpu
el gemv-sweep; timeout 200 python3 benchmarks/kernels/dense_gemv_check.py --budget-s 170 --install --git-rev $REV \
  --out $OUT 2>&1 | grep -v Warn | tail -26
ls $VDEPLOY_HOME/kernel_configs/dense_gemv
python3 benchmarks/quant_configs.py /tmp/qm --models deepseek-r1-distill-qwen-7b deepseek-r1-distill-llama-8b --schemes bf16 > /dev/null
mkdir -p $OUT/ab /tmp/empty-home
for model in llama-8b qwen-7b; do for home in /tmp/empty-home $VDEPLOY_HOME; do
  tag=$([ $home = /tmp/empty-home ] && echo cublas || echo gemv); el $model-$tag
  VDEPLOY_HOME=$home timeout 80 python3 -m vdeploy bench /tmp/qm/deepseek-r1-distill-$model-bf16 --load-format dummy \
    --num-prompts 1 --input-len 128 --output-len 1024 --max-model-len 4096 --temperature 1.0 \
    -o $OUT/ab/$model-$tag.json 2>&1 | grep -v Warn | tail -2
done; done
el step-llama; timeout 60 python3 benchmarks/engine/step_phases.py /tmp/qm/deepseek-r1-distill-llama-8b-bf16 \
  --num-prompts 1 --input-len 128 --output-len 120 --profile-after 40 --profile-steps 8 --label llama-8b-gemv \
  --out $OUT/step-llama-8b-gemv 2>&1 | grep -v Warn | grep -E "total_ms|gpu_forward_ms|profiled"
el done
