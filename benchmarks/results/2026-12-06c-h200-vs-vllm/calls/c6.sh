source benchmarks/results/2026-12-06c-h200-vs-vllm/calls/common.sh
el vllm-r1lat; VLLM_USE_DEEP_GEMM=0 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
el done
