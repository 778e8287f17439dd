# any GPU, after the peer is unpacked. carry: nothing — issue 14: decode_8b's and prefill_8x4096's pairs
source "$(dirname "$0")/common.sh"
el lat; timeout 90 bash benchmarks/same_lease.sh lat
el vllm-lat; timeout 150 bash /tmp/peer/bench.sh lat 2>&1 | grep -E "Avg latency|Error|error" | tail -3
el suite; timeout 120 bash benchmarks/same_lease.sh suite
el vllm-prefill; ITERS=3 timeout 150 bash /tmp/peer/bench.sh prefill 2>&1 | grep -E "Avg latency|Error|error" | tail -3
vllm_logs lat; el done
