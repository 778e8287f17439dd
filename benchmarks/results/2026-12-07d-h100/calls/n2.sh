# for the next lease (d1.sh's step profiles, which failed on stale hooks in step_phases.py, fixed since) — carry:
# nothing. Where a batch-1 decode step's time goes, kernel by kernel: AWQ and bf16 at the R1-Distill-Qwen-7B shape
# (issue 19: 1.74x where the bytes allow ~3.1x) and the Llama-3.1-8B shape in bf16 (issue 14: decode_8b at 0.78 of
# its roofline)
source "$(dirname "$0")/common.sh"
python3 benchmarks/quant_configs.py /tmp/qm --models deepseek-r1-distill-qwen-7b deepseek-r1-distill-llama-8b --schemes bf16 awq > /dev/null
for m in qwen-7b-awq qwen-7b-bf16 llama-8b-bf16; do
  el step-$m; timeout 90 python3 benchmarks/engine/step_phases.py /tmp/qm/deepseek-r1-distill-$m \
    --num-prompts 1 --input-len 128 --output-len 120 --profile-after 40 --profile-steps 8 --label $m \
    --out $OUT/step-$m 2>&1 | grep -v Warn | tail -25
done
el done
