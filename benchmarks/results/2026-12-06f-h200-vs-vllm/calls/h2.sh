# H100 fallback. carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours: Llama-8B batch 1 (decode_8b)
source benchmarks/results/2026-12-06f-h200-vs-vllm/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el lat; timeout 100 bash benchmarks/same_lease.sh lat
el done
