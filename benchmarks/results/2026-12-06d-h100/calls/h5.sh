# H100 call 5 — no carry. vLLM on R1 at 4 layers (CUTLASS block FP8, no DeepGEMM): throughput and batch 1
source benchmarks/results/2026-12-06d-h100/calls/common.sh
cut_r1
el vllm-r1tp-4l; VLLM_USE_DEEP_GEMM=0 TAG=_4l timeout 300 bash /tmp/peer/bench.sh r1tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
el vllm-r1lat-4l; VLLM_USE_DEEP_GEMM=0 TAG=_4l timeout 250 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
el done
