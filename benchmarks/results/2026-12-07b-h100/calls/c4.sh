# carry: nothing — the same V2-Lite 500 on one random checkpoint in both engines (written on this GPU, 31 GB)
source benchmarks/results/2026-12-07b-h100/calls/common.sh
el dsv2tp-500-random; WEIGHTS=random N=500 TAG=_500 timeout 220 bash benchmarks/same_lease.sh dsv2tp
el vllm-dsv2tp-500-random; N=500 TAG=_500 timeout 200 bash benchmarks/peer_random_weights.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs-random.tar.gz *.log && rm *.log)
el done
