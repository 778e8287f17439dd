# carry: .peer/vllm026.part01 — ours only, as the budget allows: R1-8L's per-kernel profile at batch 1 and 256 (vLLM's
# uniform dummy draw; PROFILE=0 skips it), Qwen2-7B W4A16 (AWQ) batch-1 decode against bf16 end to end (issue 19;
# QUANT=0 skips it), R1-8L + MTP batch-1 decode, k = 1, 2, 3 (issue 18; MTP=0 skips it)
source benchmarks/results/2026-12-06f-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
[ "${PROFILE:-1}" = 1 ] && { el r1-profile; timeout 150 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l \
  --batches 1 256 --dummy-weights uniform --git-rev $REV --out $OUT/profile_r1-8l.json 2>&1 | grep -v Warn | tail -8; }
[ "${QUANT:-1}" = 1 ] && { el quant-b1; python3 benchmarks/quant_configs.py /tmp/qm > /dev/null
  for m in deepseek-r1-distill-qwen-7b-bf16 deepseek-r1-distill-qwen-7b-awq; do
    timeout 100 python3 -m vdeploy bench /tmp/qm/$m --load-format dummy --num-prompts 1 --input-len 128 --output-len 512 \
      --json -o $OUT/quant-b1-$m.json 2>&1 | grep -v Warn | tail -2; done; }
[ "${MTP:-1}" = 1 ] && { el mtp; timeout 200 python3 benchmarks/speculative_mtp.py --num-prompts 1 --out $OUT/speculative-mtp.json 2>&1 | grep -v Warn | tail -25; }
el done
