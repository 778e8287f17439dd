# run inline as calls 4 and 5: call 4 (carry .peer/vllm026.part02) unpacked the peer and ran vLLM's V2-Lite 500 under
# `timeout 200`, which cut it off while it was still processing prompts (vllm-logs-dsv2-timed-out.tar.gz: its first
# start compiles); call 5 ran it again with `timeout 330` (vllm_throughput_dsv2lite_500.json, vllm-logs-dsv2.tar.gz)
source benchmarks/results/2026-12-06e-h100/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > vllm026.tar.xz && sha256sum -c vllm026.sha256 && tar -xJf vllm026.tar.xz && rm vllm026.tar.xz vllm026.part0?) | tail -2
el vllm-dsv2tp-500; N=500 TAG=_500 timeout 330 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs-dsv2.tar.gz *.log && rm *.log); el done
