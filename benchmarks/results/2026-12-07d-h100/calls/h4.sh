# H200, after h3 — vLLM's R1-8L 256 × 1000/1000 (VLLM_USE_DEEP_GEMM=0)
source "$(dirname "$0")/common.sh"
el vllm-r1tp; VLLM_USE_DEEP_GEMM=0 timeout 330 bash /tmp/peer/bench.sh r1tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
vllm_logs r1tp; el done
