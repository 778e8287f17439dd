# H100 fallback. carry: .whl .peer/models — GPU tests of changes 32/33, the FP8 decode sweep at M = 1 (with the
# pre_quant variant), V2-Lite's MLA decode sweep with KV splits at 256-1,024 rows (its table stays in $VDEPLOY_HOME
# for this machine's later runs), ours: V2-Lite decode step at 500 rows, timed and profiled as vLLM's will be (decode_step_compare)
source benchmarks/results/2026-12-06g-h200-vs-vllm/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 120 python3 -m pytest -q -p no:cacheprovider \
  tests/deepseek/test_deepseek_kernels_gpu.py -k "fused_decode or w8a8 or quant" \
  2>&1 | grep -v Warn | tail -20 > $OUT/gpu-tests.txt; tail -6 $OUT/gpu-tests.txt
el fp8-decode-check; timeout 150 python3 benchmarks/kernels/fp8_decode_check.py --sweep --sweep-m 1 --git-rev $REV --out $OUT 2>&1 | grep -v Warn | tail -40
el mla16-sweep; timeout 120 python3 benchmarks/kernels/mla_decode_sweep.py --heads 16 --out $OUT/mla_decode_sweep_h16.json 2>&1 | grep -v Warn | grep -E "B= *(256|512|1024)|table|wrote" | tail -40
cp $VDEPLOY_HOME/kernel_configs/mla_decode/*.json $OUT/ 2>/dev/null
el step-compare; timeout 200 python3 benchmarks/engine/decode_step_compare.py --engine vdeploy --model /tmp/peer/models/dsv2-lite-dummy --git-rev $REV --out $OUT/step_v2lite_vdeploy.json 2>&1 | grep -v Warn | tail -4
el done
