# run inline as call 7: ours, prefill 8 x 4096 with the sweep's table (device TMA) in VDEPLOY_HOME
source benchmarks/results/2026-12-06e-h100/calls/common.sh
el prefill; timeout 200 python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite --git-rev e8be6db-nosilu 2>&1 | grep -v Warning | tail -6
cp /tmp/suite/prefill.json $OUT/vdeploy_prefill_8x4096.json; cp /tmp/suite/hardware.json $OUT/; el done
