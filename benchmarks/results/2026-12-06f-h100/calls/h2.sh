# H100 fallback. carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours: V2-Lite 500 (DSV2=0 skips it), Llama-8B
# batch 1 (LAT=0 skips it)
source benchmarks/results/2026-12-06f-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
[ "${DSV2:-1}" = 1 ] && { el dsv2tp-500; N=500 TAG=_500 timeout 130 bash benchmarks/same_lease.sh dsv2tp; }
[ "${LAT:-1}" = 1 ] && { el lat; timeout 100 bash benchmarks/same_lease.sh lat; }
el done
