# carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours: R1-8L 256, V2-Lite 500 and Qwen2-7B 1000, sampling at
# temperature 1.0 as vLLM does (QWEN=0 skips Qwen2-7B where the budget is short)
source benchmarks/results/2026-12-06f-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el r1tp; timeout 190 bash benchmarks/same_lease.sh r1tp
el dsv2tp-500; N=500 TAG=_500 timeout 150 bash benchmarks/same_lease.sh dsv2tp
[ "${QWEN:-1}" = 1 ] && { el tp; timeout 210 bash benchmarks/same_lease.sh tp; }
el done
