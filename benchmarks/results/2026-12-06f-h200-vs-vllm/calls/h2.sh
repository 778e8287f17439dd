# H100 fallback. carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours: Qwen2-7B 1000 x 1000/1000, sampling at 1.0
source benchmarks/results/2026-12-06f-h200-vs-vllm/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el tp; timeout 220 bash benchmarks/same_lease.sh tp
el done
