# carry: .peer/vllm026.part02 — unpack the peer (its models/ are the dummy model directories); V2-Lite 500 x
# (1000 / 1000) on the tied workload (change 35), ours then vLLM's
source benchmarks/results/2026-12-07b-h100/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > vllm026.tar.xz && sha256sum -c vllm026.sha256 && tar -xJf vllm026.tar.xz && rm vllm026.tar.xz vllm026.part0?)
el dsv2tp-500-tied; N=500 TAG=_500 timeout 100 bash benchmarks/same_lease.sh dsv2tp
el vllm-dsv2tp-500; N=500 TAG=_500 timeout 240 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs.tar.gz *.log && rm *.log)
el done
