# H100 fallback. carry: .peer/vllm026.part02 — unpack the peer; vLLM: Qwen2-7B 1000 x 1000/1000 (first start: compiles)
source benchmarks/results/2026-12-06f-h100/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > vllm026.tar.xz && sha256sum -c vllm026.sha256 && tar -xJf vllm026.tar.xz && rm vllm026.tar.xz vllm026.part0?)
el vllm-tp; timeout 330 bash /tmp/peer/bench.sh tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs-a.tar.gz *.log && rm *.log)
el done
