# no carry, if the budget allows: our V2-Lite decode step at 500 rows on the tied workload (decode_step_compare: wall
# against device time, after change 36), then step_phases (host time per phase)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
el step-compare; timeout 150 python3 benchmarks/engine/decode_step_compare.py --engine vdeploy --model /tmp/peer/models/dsv2-lite-dummy --git-rev $REV --out $OUT/step_v2lite_vdeploy_tied.json 2>&1 | grep -v Warn | tail -2
el step-phases; timeout 120 python3 benchmarks/engine/step_phases.py /tmp/peer/models/dsv2-lite-dummy --num-prompts 500 --input-len 1000 --output-len 120 --dummy-weights uniform --temperature 1.0 --label v2lite-500 --out $OUT/phases 2>&1 | grep -v Warn | tail -14
el done
