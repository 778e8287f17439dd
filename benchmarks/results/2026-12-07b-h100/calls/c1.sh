# carry: .peer/vllm026.part00 .peer/vllm026.sha256 — the GPU tests of changes 34-37; ours: W4A16 batch-1 decode end to
# end against bf16 (issue 19: R1-Distill-Qwen-7B shape, dummy weights, configs from quant_configs.py)
source benchmarks/results/2026-12-07b-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el tests; timeout 100 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_mtp_gpu.py \
  tests/deepseek/test_deepseek_kernels_gpu.py tests/kernels/test_kernel_fresh_prefill.py -k "side_stream or tiny_deepseek or shared_output or mtp or torch_backend" 2>&1 | grep -v Warn | tail -8 > $OUT/gpu-tests.txt; tail -3 $OUT/gpu-tests.txt
el quant-b1; python3 benchmarks/quant_configs.py /tmp/qm --schemes bf16 awq > /dev/null; mkdir -p $OUT/quant
models="deepseek-r1-distill-qwen-7b-bf16 deepseek-r1-distill-qwen-7b-awq"
for m in $models; do
  el $m; timeout 90 python3 -m vdeploy bench /tmp/qm/$m --load-format dummy --num-prompts 1 --input-len 128 --output-len 512 \
    --max-model-len 4096 --json -o $OUT/quant/$m-b1.json 2>&1 | grep -v Warn | tail -3
done
el done
