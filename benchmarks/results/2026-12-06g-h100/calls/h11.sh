# second lease, ours only (too little device time was left for vLLM's side: no ratio). carry: .peer/models —
# V2-Lite 500 × 1000/1000 on the tied workload (change 35), our decode step at 500 rows (wall against device time,
# after change 36)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el dsv2tp-500; N=500 TAG=_500 timeout 100 bash benchmarks/same_lease.sh dsv2tp
el step-compare; timeout 100 python3 benchmarks/engine/decode_step_compare.py --engine vdeploy --model /tmp/peer/models/dsv2-lite-dummy --git-rev $REV --out $OUT/step_v2lite_vdeploy_tied.json 2>&1 | grep -v Warn | tail -2
el done
