# H100 fallback. carry: .peer/vllm026.part02 — unpack the peer; vLLM: V2-Lite 500 (first start: compiles), then
# Llama-8B batch 1 (LAT=0 skips it)
source benchmarks/results/2026-12-06f-h200-vs-vllm/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > vllm026.tar.xz && sha256sum -c vllm026.sha256 && tar -xJf vllm026.tar.xz && rm vllm026.tar.xz vllm026.part0?)
el vllm-dsv2tp-500; N=500 TAG=_500 timeout 320 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
[ "${LAT:-1}" = 1 ] && { el vllm-lat; timeout 230 bash /tmp/peer/bench.sh lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5; }
(cd $OUT && tar czf vllm-logs-a.tar.gz *.log && rm *.log)
el done
