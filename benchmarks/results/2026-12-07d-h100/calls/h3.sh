# H200, the call that carries the peer's last part (it unpacks; its models/ hold the dummy model directories) —
# issue 15: R1-8L batch 1 and 256 × 1000/1000, ours (sampling at 1.0 as vLLM's) then vLLM's batch 1
# (VLLM_USE_DEEP_GEMM=0: CUTLASS block FP8); h4 runs vLLM's 256
source "$(dirname "$0")/common.sh"
el r1lat; timeout 120 bash benchmarks/same_lease.sh r1lat
el r1tp; timeout 200 bash benchmarks/same_lease.sh r1tp
el vllm-r1lat; VLLM_USE_DEEP_GEMM=0 timeout 200 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
vllm_logs r1lat; el done
