# NEXT LEASE. carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours: decode_8b (batch 1, Llama-3.1-8B shape)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el lat; timeout 120 bash benchmarks/same_lease.sh lat
el done
