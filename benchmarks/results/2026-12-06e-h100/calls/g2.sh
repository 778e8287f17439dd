# carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours: V2-Lite 500 x 1000/1000, Llama-8B batch 1, Qwen2-7B 1000 x 1000/1000
# (every throughput run samples at temperature 1.0, as vLLM's bench does)
source benchmarks/results/2026-12-06e-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el dsv2tp-500; N=500 TAG=_500 timeout 150 bash benchmarks/same_lease.sh dsv2tp
el lat; timeout 100 bash benchmarks/same_lease.sh lat
el tp; timeout 220 bash benchmarks/same_lease.sh tp
el done
