# H100 fallback. carry: .peer/vllm026.part01 — ours: V2-Lite 500 × 1000/1000 (the ratio's other half)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el dsv2tp-500; N=500 TAG=_500 timeout 150 bash benchmarks/same_lease.sh dsv2tp
el done
