# H100 fallback. carry: .peer/vllm026.part01 — ours: Qwen2-7B W4A16 (AWQ) batch-1 decode against bf16 (issue 19;
# QUANT=0 skips it where the budget is short)
source benchmarks/results/2026-12-06f-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
[ "${QUANT:-1}" = 1 ] && { el quant-b1; python3 benchmarks/quant_configs.py /tmp/qm > /dev/null
  for m in deepseek-r1-distill-qwen-7b-bf16 deepseek-r1-distill-qwen-7b-awq; do
    timeout 100 python3 -m vdeploy bench /tmp/qm/$m --load-format dummy --num-prompts 1 --input-len 128 --output-len 512 \
      --json -o $OUT/quant-b1-$m.json 2>&1 | grep -v Warn | tail -2; done; }
el done
