# H100 profiling lease (no vLLM): GPU checks of the kernels changed after the last lease, then V2-Lite / R1 profiles
# carry: .whl .peer/models
source benchmarks/results/2026-12-06d-h200/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 170 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py tests/models/test_quant_gpu.py \
  2>&1 | grep -v Warn | tail -25 > $OUT/gpu-tests.txt; tail -8 $OUT/gpu-tests.txt
el profile-v2; timeout 200 python3 benchmarks/deepseek_kernel_profile.py --model v2-lite --batches 1 512 --git-rev "$REV" --out $OUT/profile_v2-lite.json 2>&1 | grep -v Warn | tail -45
el quant-check; timeout 120 python3 benchmarks/kernels/quant_gemm_check.py --out $OUT 2>&1 | grep -v Warn | tail -30
el done
