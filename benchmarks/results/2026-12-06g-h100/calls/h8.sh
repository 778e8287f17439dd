# carry: .peer/vllm026.part01
source benchmarks/results/2026-12-06g-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/ && el done
