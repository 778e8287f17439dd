# no carry — H200: vLLM's R1 batch-1 decode and V2-Lite 500; H100: the prefill pair (vLLM, ours)
source benchmarks/results/2026-12-06d-h100/calls/common.sh
if h200; then
  el vllm-r1lat; VLLM_USE_DEEP_GEMM=0 timeout 280 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
  el vllm-dsv2tp-500; N=500 TAG=_500 timeout 280 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
else
  el vllm-prefill; ITERS=3 timeout 250 bash /tmp/peer/bench.sh prefill 2>&1 | grep -E "Avg latency|Error|error" | tail -5
  el vdeploy-prefill; timeout 200 python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite --git-rev "$REV" 2>&1 | grep -v Warning | tail -6
  cp /tmp/suite/prefill.json $OUT/vdeploy_prefill_8x4096.json; cp /tmp/suite/hardware.json $OUT/
fi
el done
