# third call. carry: .peer/vllm026.part01 (the peer unpacks). Issue 15, vLLM's side of decode_r1_8l and
# throughput_r1_8l (VLLM_USE_DEEP_GEMM=0: its CUTLASS block-FP8 GEMM; 6 layers and --gpu-memory-utilization 0.80 on an
# 80 GB card, as r1_fit says), then throughput_dsv2_lite (1000 x 1000/1000) where c1 ran ours
source benchmarks/lease_common.sh; gpu; r1_fit
el vllm-r1lat$R1TAG; VLLM_USE_DEEP_GEMM=0 TAG=$R1TAG timeout 150 bash /tmp/peer/bench_extra.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -3
el vllm-r1tp$R1TAG; VLLM_USE_DEEP_GEMM=0 TAG=$R1TAG timeout 200 bash /tmp/peer/bench_extra.sh r1tp 2>&1 | grep -E "Throughput|Error|error" | tail -3
if [ "${DSV2:-0}" = 1 ]; then  # as in c1
  el vllm-dsv2tp; timeout 240 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -3
fi
vllm_logs ds; el done
