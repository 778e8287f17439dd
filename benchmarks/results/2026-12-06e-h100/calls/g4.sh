# carry: .peer/vllm026.part02 — unpack the peer; vLLM: V2-Lite 500 and Qwen2-7B 1000
source benchmarks/results/2026-12-06e-h100/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > vllm026.tar.xz && sha256sum -c vllm026.sha256 && tar -xJf vllm026.tar.xz && rm vllm026.tar.xz vllm026.part0?)
el vllm-dsv2tp-500; N=500 TAG=_500 timeout 200 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
el vllm-tp; timeout 220 bash /tmp/peer/bench.sh tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs-g4.tar.gz *.log && rm *.log)
el done
