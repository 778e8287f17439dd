# H100 fallback. no carry — vLLM: Qwen2-7B 1000 x 1000/1000
source benchmarks/results/2026-12-06f-h200-vs-vllm/calls/common.sh
el vllm-tp; timeout 300 bash /tmp/peer/bench.sh tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs-b.tar.gz *.log && rm *.log)
el done
