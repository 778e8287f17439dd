# NEXT LEASE. carry: .peer/vllm026.part01 — ours: V2-Lite step phases (host time per phase, tied workload)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el step-phases; timeout 120 python3 benchmarks/engine/step_phases.py /tmp/peer/models/dsv2-lite-dummy --num-prompts 500 --input-len 1000 --output-len 120 --dummy-weights uniform --temperature 1.0 --label v2lite-500 --out $OUT/phases 2>&1 | grep -v Warn | tail -14
el done
