# H100 lease, call 1 — carry: .whl .peer/models. GPU checks of the new kernels, then the MLA prefill sweep
source benchmarks/results/2026-12-06d-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 230 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_mla_prefill_kernel.py \
  tests/deepseek/test_deepseek_kernels_gpu.py tests/models/test_quant_gpu.py 2>&1 | grep -v Warn | tail -30 > $OUT/gpu-tests.txt; tail -12 $OUT/gpu-tests.txt
el mla-prefill-sweep; timeout 200 python3 benchmarks/kernels/mla_prefill_sweep.py --budget-s 110 --out $OUT/mla_prefill_sweep.json 2>&1 | grep -v Warn | tail -24
el done
