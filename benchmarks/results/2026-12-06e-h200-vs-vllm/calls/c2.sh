# carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours, dense: Qwen2-7B 1000 x 1000/1000 (temperature 1.0), Llama-8B batch 1, prefill 8 x 4096
source benchmarks/results/2026-12-06e-h200-vs-vllm/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el tp; timeout 220 bash benchmarks/same_lease.sh tp
el lat; timeout 100 bash benchmarks/same_lease.sh lat
el prefill; timeout 150 python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite --git-rev "$REV" 2>&1 | grep -v Warning | tail -6
cp /tmp/suite/prefill.json $OUT/vdeploy_prefill_8x4096.json; cp /tmp/suite/hardware.json $OUT/
el done
