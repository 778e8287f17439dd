# H200 only, fourth call (the peer unpacked in the third): issue 15, vLLM's side of throughput_r1_8l, 256 x 1000 /
# 1000 on its dummy draw (VLLM_USE_DEEP_GEMM=0); ours ran in a2.sh
source "$(dirname "$0")/common.sh"; gpu
el vllm-r1tp; VLLM_USE_DEEP_GEMM=0 timeout 330 bash /tmp/peer/bench.sh r1tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
vllm_logs r1tp
pack_dirs; el done
