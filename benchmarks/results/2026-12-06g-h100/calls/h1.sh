# H100 fallback. carry: .whl .peer/models — GPU tests of changes 32/33; V2-Lite's MLA decode sweep with KV splits at
# 256-1,024 rows and its fused-MoE tiles tuned on this card (both tables stay in $VDEPLOY_HOME for this machine's later
# runs, copies to $OUT); ours: V2-Lite decode step at 500 rows, timed and profiled as vLLM's will be (decode_step_compare)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 100 python3 -m pytest -q -p no:cacheprovider \
  tests/deepseek/test_deepseek_kernels_gpu.py -k "fused_decode or w8a8 or quant or side_stream" \
  2>&1 | grep -v Warn | tail -20 > $OUT/gpu-tests.txt; tail -4 $OUT/gpu-tests.txt
el mla16-sweep; timeout 100 python3 benchmarks/kernels/mla_decode_sweep.py --heads 16 --out $OUT/mla_decode_sweep_h16.json 2>&1 | grep -v Warn | grep -E "B= *(256|512|1024)|table|wrote|error|Error" | tail -30
el moe-tune; timeout 140 python3 benchmarks/kernels/tune_fused_moe.py --shape v2-lite --tokens 1 8 64 256 512 1024 4096 16384 --report $OUT/tune_fused_moe_v2lite.json 2>&1 | grep -v Warn | tail -12
mkdir -p $OUT/tables && cp $VDEPLOY_HOME/kernel_configs/*/*.json $OUT/tables/ 2>/dev/null
el step-compare; timeout 200 python3 benchmarks/engine/decode_step_compare.py --engine vdeploy --model /tmp/peer/models/dsv2-lite-dummy --git-rev $REV --out $OUT/step_v2lite_vdeploy.json 2>&1 | grep -v Warn | tail -4
el done
