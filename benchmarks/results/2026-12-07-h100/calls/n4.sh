# carry: .peer/vllm026.part02 — unpack the peer; vLLM's V2-Lite 500 (dummy) and on the random checkpoint
# n1 wrote (/tmp/random/dsv2-lite-dummy)
source benchmarks/results/2026-12-07-h100/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > vllm026.tar.xz && sha256sum -c vllm026.sha256 && tar -xJf vllm026.tar.xz && rm vllm026.tar.xz vllm026.part0?)
el vllm-dsv2tp-500; N=500 TAG=_500 timeout 240 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
el vllm-dsv2tp-500-random; N=500 TAG=_500 timeout 180 bash benchmarks/peer_random_weights.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs.tar.gz *.log && rm *.log)
el done
