# fourth call, if the budget holds it. Issue 14, vLLM's side of decode_8b and prefill_8x4096
source "$(dirname "$0")/common.sh"; gpu
el vllm-lat; timeout 170 bash /tmp/peer/bench.sh lat 2>&1 | grep -E "Avg latency|Error|error" | tail -3
el vllm-prefill; ITERS=3 timeout 150 bash /tmp/peer/bench.sh prefill 2>&1 | grep -E "Avg latency|Error|error" | tail -3
vllm_logs dense; el done
