# the third lease, third call (carries .peer/vllm026.part02: unpacks), H200 — issue 15: vLLM's side of decode_r1_8l
# (VLLM_USE_DEEP_GEMM=0: its CUTLASS block-FP8 GEMM; the default JIT-compiles DeepGEMM for minutes)
source "$(dirname "$0")/common.sh"
el vllm-r1lat; VLLM_USE_DEEP_GEMM=0 timeout 230 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
vllm_logs r1lat; el done
