# any GPU, third call (carries .peer/vllm026.part02: unpacks) — issue 14: decode_8b's pair, ours with g1's dense-GEMV
# tables in $VDEPLOY_HOME, then vLLM's (its lat needs ~250 s: engine start, warm-up, iterations)
source "$(dirname "$0")/common.sh"
el lat; timeout 90 bash benchmarks/same_lease.sh lat
el vllm-lat; timeout 300 bash /tmp/peer/bench.sh lat 2>&1 | grep -E "Avg latency|Error|error" | tail -3
vllm_logs lat; el done
