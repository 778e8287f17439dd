# carry: .whl .peer/models   (needs_h200: vLLM 0.26 cannot start R1-8L on 80 GB)
source benchmarks/results/2026-12-06d-h200/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 170 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py tests/models/test_quant_gpu.py \
  2>&1 | grep -v Warn | tail -25 > $OUT/gpu-tests.txt; tail -8 $OUT/gpu-tests.txt
el r1tp; timeout 150 bash benchmarks/same_lease.sh r1tp
el r1lat; timeout 100 bash benchmarks/same_lease.sh r1lat
el done
