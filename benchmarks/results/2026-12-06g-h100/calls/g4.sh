# carry: .peer/vllm026.part02 — unpack the peer; vLLM's R1-8L pair (VLLM_USE_DEEP_GEMM=0: CUTLASS block FP8)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > vllm026.tar.xz && sha256sum -c vllm026.sha256 && tar -xJf vllm026.tar.xz && rm vllm026.tar.xz vllm026.part0?)
el vllm-r1tp; VLLM_USE_DEEP_GEMM=0 timeout 330 bash /tmp/peer/bench.sh r1tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
el vllm-r1lat; VLLM_USE_DEEP_GEMM=0 timeout 200 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs-r1.tar.gz *.log && rm *.log)
el done
