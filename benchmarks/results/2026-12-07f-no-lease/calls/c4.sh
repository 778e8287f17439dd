# fourth call, where the budget holds it (the peer unpacked in c3). On an H200: throughput_dsv2_lite's pair
# (1000 x 1000/1000; c1 and c3 left it out). On an H100: decode_8b's pair
source benchmarks/lease_common.sh; gpu
if h200; then
  el dsv2tp; timeout 200 bash benchmarks/same_lease.sh dsv2tp
  el vllm-dsv2tp; timeout 240 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -3
else
  el lat; timeout 100 bash benchmarks/same_lease.sh lat
  el vllm-lat; timeout 170 bash /tmp/peer/bench.sh lat 2>&1 | grep -E "Avg latency|Error|error" | tail -3
fi
vllm_logs c4; el done
