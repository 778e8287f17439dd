# H100 fallback. no carry — vLLM: V2-Lite 500 (DSV2=0 skips it), Llama-8B batch 1 (LAT=0 skips it)
source benchmarks/results/2026-12-06f-h100/calls/common.sh
[ "${DSV2:-1}" = 1 ] && { el vllm-dsv2tp-500; N=500 TAG=_500 timeout 300 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5; }
[ "${LAT:-1}" = 1 ] && { el vllm-lat; timeout 230 bash /tmp/peer/bench.sh lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5; }
(cd $OUT && tar czf vllm-logs-b.tar.gz *.log && rm *.log)
el done
