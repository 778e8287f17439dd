# any GPU, after the peer is unpacked. carry: nothing — issue 14: the Qwen2-7B pair (1000 × 1000/1000, both sampling
# at 1.0), then decode_8b's pair
source "$(dirname "$0")/common.sh"
el tp; timeout 200 bash benchmarks/same_lease.sh tp
el vllm-tp; timeout 260 bash /tmp/peer/bench.sh tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
vllm_logs tp; el done
