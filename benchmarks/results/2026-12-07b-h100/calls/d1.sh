# for the next lease (not run in this one: the budget was spent) — carry: nothing. Issue 19: W4A16 batch 1 is 1.53x
# bf16 end to end where its bytes allow ~3.1x; where the 3.9 ms of an AWQ decode step go, kernel by kernel, beside
# bf16's (R1-Distill-Qwen-7B shape, dummy weights, CUDA graphs, 8 profiled pure-decode steps)
source benchmarks/results/2026-12-07b-h100/calls/common.sh
python3 benchmarks/quant_configs.py /tmp/qm --schemes bf16 awq > /dev/null
for m in awq bf16; do
  el step-$m; timeout 150 python3 benchmarks/engine/step_phases.py /tmp/qm/deepseek-r1-distill-qwen-7b-$m \
    --num-prompts 1 --input-len 128 --output-len 200 --profile-after 40 --profile-steps 8 --label w4-$m \
    --out $OUT/step-$m 2>&1 | grep -v Warn | tail -25
done
el done
