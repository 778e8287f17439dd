# no carry — vLLM: Llama-8B batch 1 and prefill 8 x 4096
source benchmarks/results/2026-12-06e-h100/calls/common.sh
el vllm-lat; ITERS=3 timeout 120 bash /tmp/peer/bench.sh lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
el vllm-prefill; ITERS=3 timeout 120 bash /tmp/peer/bench.sh prefill 2>&1 | grep -E "Avg latency|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs-g5.tar.gz *.log && rm *.log)
el done
