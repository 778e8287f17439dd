# One call, ours only (the device time left after refused starts no longer holds the peer's three carries and its
# run). carry: .peer/models/dsv2-lite-dummy — the GPU tests of changes 34-37; W4A16 batch-1 decode end to end against
# bf16 (issue 19, R1-Distill-Qwen-7B shape); fresh prefill attention against torch's kernels (issue 14); our V2-Lite
# decode step on the tied workload (change 35; device time per kernel family, wall per step)
source benchmarks/results/2026-12-07b-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
mkdir -p /tmp/peer/models && cp -r .peer/models/dsv2-lite-dummy /tmp/peer/models/
el tests; timeout 80 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_mtp_gpu.py \
  tests/deepseek/test_deepseek_kernels_gpu.py tests/kernels/test_kernel_fresh_prefill.py \
  -k "side_stream or tiny_deepseek or shared_output or mtp or torch_backend" 2>&1 | grep -v Warn | tail -8 > $OUT/gpu-tests.txt; tail -3 $OUT/gpu-tests.txt
el quant-b1; python3 benchmarks/quant_configs.py /tmp/qm --schemes bf16 awq > /dev/null; mkdir -p $OUT/quant
for m in deepseek-r1-distill-qwen-7b-bf16 deepseek-r1-distill-qwen-7b-awq; do
  el $m; timeout 90 python3 -m vdeploy bench /tmp/qm/$m --load-format dummy --num-prompts 1 --input-len 128 --output-len 512 \
    --max-model-len 4096 --json -o $OUT/quant/$m-b1.json 2>&1 | grep -v Warn | tail -3
done
el backends; timeout 90 python3 benchmarks/kernels/prefill_attention_backends.py --out $OUT/prefill_backends.json 2>&1 | grep -v Warn | tail -12
el step-compare; timeout 120 python3 benchmarks/engine/decode_step_compare.py --engine vdeploy --model /tmp/peer/models/dsv2-lite-dummy --git-rev $REV --out $OUT/step_v2lite_vdeploy_tied.json 2>&1 | grep -v Warn | tail -4
el done
