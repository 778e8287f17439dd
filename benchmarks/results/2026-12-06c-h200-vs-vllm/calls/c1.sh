# carry: .whl .peer/models/r1-8l-dummy .peer/models/dsv2-lite-dummy
source benchmarks/results/2026-12-06c-h200-vs-vllm/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 250 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py tests/deepseek/test_mtp_gpu.py \
  tests/worker/test_model_runner_cuda_worker.py tests/models/test_quant_gpu.py 2>&1 | grep -v Warn | tail -25 > $OUT/gpu-tests.txt; tail -25 $OUT/gpu-tests.txt
[ -f benchmarks/kernels/prefill_attention_sweep.py ] && { el prefill-sweep; timeout 150 python3 benchmarks/kernels/prefill_attention_sweep.py --out $OUT/prefill_sweep.json > $OUT/prefill_sweep.txt 2>&1; grep -v Warn $OUT/prefill_sweep.txt | tail -30; }
[ -f benchmarks/kernels/mla_decode_sweep.py ] && { el mla-sweep; timeout 150 python3 benchmarks/kernels/mla_decode_sweep.py --out $OUT/mla_sweep.json > $OUT/mla_sweep.txt 2>&1; grep -v Warn $OUT/mla_sweep.txt | tail -30; }
cd /tmp && tar czf $OUT/tables1.tgz vdeploy-home 2>/dev/null; el done
