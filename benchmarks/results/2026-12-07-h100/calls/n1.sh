# carry: .whl .peer/models
# GPU tests of changes 34-37 (side stream, in the MTP layer too; the tiny DeepSeek engine on CUDA runs change 37's
# strided bmm), ours:
# V2-Lite 500 on the tied workload (change 35), the same on one random checkpoint (written here, 31 GB), our decode
# step at 500 rows on the tied workload (wall against device time after change 36)
source benchmarks/results/2026-12-07-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 100 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_mtp_gpu.py \
  tests/deepseek/test_deepseek_kernels_gpu.py -k "side_stream or tiny_deepseek or shared_output or mtp" 2>&1 | grep -v Warn | tail -8 > $OUT/gpu-tests.txt; tail -3 $OUT/gpu-tests.txt
el dsv2tp-500-tied; N=500 TAG=_500 timeout 100 bash benchmarks/same_lease.sh dsv2tp
el dsv2tp-500-random; WEIGHTS=random N=500 TAG=_500 timeout 200 bash benchmarks/same_lease.sh dsv2tp
el step-compare; timeout 110 python3 benchmarks/engine/decode_step_compare.py --engine vdeploy --model /tmp/peer/models/dsv2-lite-dummy --git-rev $REV --out $OUT/step_v2lite_vdeploy_tied.json 2>&1 | grep -v Warn | tail -2
el done
