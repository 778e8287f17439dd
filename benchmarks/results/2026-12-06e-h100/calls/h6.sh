# run inline as call 6: vLLM's Llama-8B batch 1 (cut off by `timeout 150`: no result) and prefill 8 x 4096
source benchmarks/results/2026-12-06e-h100/calls/common.sh
el vllm-lat; ITERS=3 timeout 150 bash /tmp/peer/bench.sh lat 2>&1 | grep -E "Avg latency|Error|error" | tail -3
el vllm-prefill; ITERS=3 timeout 150 bash /tmp/peer/bench.sh prefill 2>&1 | grep -E "Avg latency|Error|error" | tail -3
(cd $OUT && tar czf vllm-logs-dense.tar.gz *.log && rm *.log); el done
