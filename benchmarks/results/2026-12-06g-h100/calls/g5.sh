# no carry — if the budget allows: the Qwen2-7B pair on the H200 (both sampling at 1.0)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
el tp; timeout 220 bash benchmarks/same_lease.sh tp
el vllm-tp; timeout 290 bash /tmp/peer/bench.sh tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs-dense.tar.gz *.log && rm *.log)
el done
