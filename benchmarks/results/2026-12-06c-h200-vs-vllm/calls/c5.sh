source benchmarks/results/2026-12-06c-h200-vs-vllm/calls/common.sh
el vllm-dsv2tp500; N=500 TAG=_500 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
el vllm-prefill; ITERS=3 bash /tmp/peer/bench.sh prefill 2>&1 | grep -E "Avg latency|Error|error" | tail -5
el done
