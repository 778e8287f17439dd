# second call. carry: .peer/vllm026.part00. On an H200, issue 18: R1 8 layers + its MTP layer, batch 1, MTP k = 1
# (real drafts, replayed acceptance 0.8 / 1.0) against none. On an H100 (no R1 pair possible): issue 14, our side of
# decode_8b and prefill_8x4096 (DENSE=1; gpu_suite, with the copy/matmul ceilings), and MTP k = 2 at 7 layers (its replays
# left their reference last session: first_mismatch says where)
source benchmarks/lease_common.sh; gpu
if [ "${MTP:-1}" = 0 ]; then  # the budget left holds only the carry
  el carry-only
elif h200; then
  el mtp; timeout 200 python3 benchmarks/speculative_mtp.py --layers 8 --num-prompts 1 --ks 1 --acceptance 0.8 1.0 \
    --out $OUT/speculative-mtp-8l.json 2>&1 | grep -v Warn | grep -E '^\{"run"|Error|error' | tail -8
else
  if [ "${DENSE:-0}" = 1 ]; then  # only when the budget holds c4 (vLLM's side)
  el lat; timeout 100 bash benchmarks/same_lease.sh lat
  el prefill; timeout 150 python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite \
    --git-rev $REV 2>&1 | grep -v Warn | tail -4; cp -r /tmp/suite $OUT/
  fi
  for mode in graphs eager; do  # with CUDA graphs and without: a difference only the graphs make
    el mtp-7l-k2-$mode; timeout 150 python3 benchmarks/speculative_mtp.py --layers 7 --num-prompts 1 --ks 2 --acceptance 1.0 \
      --output-len 96 $([ $mode = eager ] && echo --enforce-eager) --out $OUT/speculative-mtp-7l-k2-$mode.json 2>&1 \
      | grep -v Warn | grep -E '^\{"run"|Error|error' | tail -4
  done
fi
pack_dirs; el done
