# carry: .whl .peer/models/r1-8l-dummy   (any card: H200 or H100)
source benchmarks/results/2026-12-06c-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 150 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py tests/deepseek/test_mtp_gpu.py \
  2>&1 | grep -v Warn | tail -25 > $OUT/gpu-tests.txt; tail -12 $OUT/gpu-tests.txt
el r1tp-uniform; timeout 150 bash benchmarks/same_lease.sh r1tp
el done
