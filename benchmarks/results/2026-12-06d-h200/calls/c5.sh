# no carry: vLLM's R1 batch-1 decode, then V2-Lite at 500
source benchmarks/results/2026-12-06d-h200/calls/common.sh
el vllm-r1lat; VLLM_USE_DEEP_GEMM=0 timeout 300 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
el vllm-dsv2tp-500; N=500 TAG=_500 timeout 280 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
el done
