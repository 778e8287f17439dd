# H100 call 4 — carry: .peer/vllm026.part02. Unpack the peer; vLLM V2-Lite 500 and its prefill alone
source benchmarks/results/2026-12-06d-h100/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > v.tar.xz && tar -xJf v.tar.xz && rm v.tar.xz vllm026.part0?)
el vllm-dsv2tp-500; N=500 TAG=_500 timeout 280 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
el vllm-dsv2-prefill-only; N=500 OUTLEN=1 TAG=_prefill_500 timeout 200 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
el done
