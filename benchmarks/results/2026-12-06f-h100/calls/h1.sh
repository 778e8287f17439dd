# H100 fallback (no H200 came). carry: .whl .peer/models — the GPU tests and fp8_decode_check of c1.sh (the sweep's
# tables are named for the H100 there), then ours: Qwen2-7B 1000 (sampling at 1.0, as vLLM's)
source benchmarks/results/2026-12-06f-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 150 python3 -m pytest -q -p no:cacheprovider tests/worker/test_model_runner_cuda_worker.py \
  "tests/kernels/test_kernel_sampling.py::test_on_the_gpu_at_real_vocabularies" \
  tests/deepseek/test_deepseek_kernels_gpu.py -k "fused_decode or w8a8 or quant or tiny_deepseek or real_vocabularies or graphs or memory_profile or nccl" \
  2>&1 | grep -v Warn | tail -20 > $OUT/gpu-tests.txt; tail -6 $OUT/gpu-tests.txt
el fp8-decode-check; timeout 120 python3 benchmarks/kernels/fp8_decode_check.py --sweep --sweep-m ${SWEEP_M:-1 4} --git-rev $REV --out $OUT 2>&1 | grep -v Warn | tail -60
el tp; timeout 190 bash benchmarks/same_lease.sh tp
el done
