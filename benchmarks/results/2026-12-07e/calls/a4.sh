# H200 only, fourth call (the peer unpacked in the third): issue 15, throughput_r1_8l, 256 x 1000 / 1000, both
# engines on vLLM's dummy draw (VLLM_USE_DEEP_GEMM=0)
source "$(dirname "$0")/common.sh"; gpu
el vllm-r1tp; VLLM_USE_DEEP_GEMM=0 timeout 300 bash /tmp/peer/bench.sh r1tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
vllm_logs r1tp
el ours-r1tp; timeout 200 bash benchmarks/same_lease.sh r1tp
pack_dirs; el done
