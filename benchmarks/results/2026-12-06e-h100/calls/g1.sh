# carry: .whl .peer/models — first GPU run of this session's kernels: GPU tests, then each fusion against what it replaced
source benchmarks/results/2026-12-06e-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 220 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py \
  tests/models/test_quant_gpu.py tests/worker/test_model_runner_cuda_worker.py "tests/deepseek/test_mla_prefill_kernel.py::test_mla_prefill_real_shapes_on_gpu" \
  2>&1 | grep -v Warn | tail -25 > $OUT/gpu-tests.txt; tail -8 $OUT/gpu-tests.txt
el moe-fusion; timeout 90 python3 benchmarks/kernels/moe_fusion_check.py --out $OUT/moe_fusion.json 2>&1 | grep -v Warn | tail -10
el rope-store; timeout 60 python3 benchmarks/kernels/rope_store_check.py --out $OUT/rope_store_check.json 2>&1 | grep -v Warn | tail -10
el w4a16; timeout 90 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-only --out $OUT 2>&1 | grep -v Warn | tail -20
el done
