# second call. carry: .peer/vllm026.part00. On an H200, issue 18: R1 8 layers + its MTP layer, batch 1, MTP k = 1
# (real drafts, replayed acceptance 0.8 / 1.0) against none. On an H100: MTP k = 2 at 7 layers without CUDA graphs
# (d1.sh's eager run with --trace-rows; c1 ran it with graphs) and n-gram on the Llama shape (NGRAM), and
# with DENSE=1 our side of decode_8b and prefill_8x4096 (gpu_suite, with the copy/matmul ceilings)
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
  # MTP k = 2 at 7 layers without graphs, rows traced (d1.sh; c1 ran it with graphs)
  FULL_MODES=eager TINY=0 NGRAM=1 bash benchmarks/results/2026-12-07f-no-lease/calls/d1.sh
fi
pack_dirs; el done
