# carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours: R1-8L 256 × 1000/1000 (sampling at 1.0 as vLLM's)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el r1tp; timeout 200 bash benchmarks/same_lease.sh r1tp
el done
