# no carry — vLLM: V2-Lite 500 and Qwen2-7B 1000 (QWEN=0 skips it; logs in one tarball)
source benchmarks/results/2026-12-06f-h100/calls/common.sh
el vllm-dsv2tp-500; N=500 TAG=_500 timeout 290 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
[ "${QWEN:-1}" = 1 ] && { el vllm-tp; timeout 280 bash /tmp/peer/bench.sh tp 2>&1 | grep -E "Throughput|Error|error" | tail -5; }
(cd $OUT && tar czf vllm-logs-dense.tar.gz *.log && rm *.log)
el done
