# second H100 lease. carry: .peer/vllm026.part00 .peer/vllm026.sha256 (then h8: part01)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/ && el done
