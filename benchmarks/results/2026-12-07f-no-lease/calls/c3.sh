# third call. carry: .peer/vllm026.part01 (the peer unpacks). Issue 15, vLLM's side of decode_r1_8l and
# throughput_r1_8l (VLLM_USE_DEEP_GEMM=0: its CUTLASS block-FP8 GEMM), then throughput_dsv2_lite (1000 x 1000/1000)
source benchmarks/lease_common.sh; gpu
if h200; then
  el vllm-r1lat; VLLM_USE_DEEP_GEMM=0 timeout 120 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -3
  el vllm-r1tp; VLLM_USE_DEEP_GEMM=0 timeout 180 bash /tmp/peer/bench.sh r1tp 2>&1 | grep -E "Throughput|Error|error" | tail -3
fi
if [ "${DSV2:-0}" = 1 ] || ! h200; then  # as in c1
  el vllm-dsv2tp; timeout 240 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -3
fi
vllm_logs ds; el done
