# one call, no peer (the budget left after refused starts holds no three carrying calls): issue 18 only. MTP k = 2's
# replays against their reference with CUDA graphs and without (a difference only the graphs make), at 8 layers on
# an H200 (with K1=1, k = 1 at acceptance 0.8 / 1.0 too) or 7 on an H100 (8 + MTP does not fit 80 GB); before them
# the same question on the tiny model in bf16 + block FP8 (--tiny-gpu). --repeat-reference (fourteenth session): each
# real-draft run twice, so run-to-run nondeterminism (a race) shows apart from a row-position effect; --trace-rows
# (eager): the first module whose output bytes differ between the reference and the a = 1.0 replay
source benchmarks/lease_common.sh; gpu
L=$(h200 && echo 8 || echo 7)
# first, seconds: the tiny DeepSeek-V3 in bf16 + block FP8 (the full model's kernels), graphs and eager
for mode in $([ "${TINY:-1}" = 1 ] && echo graphs eager); do  # TINY=0: only the full-size runs
  el tiny-k2-$mode; timeout 120 python3 benchmarks/speculative_mtp.py --tiny-gpu --num-prompts 2 --ks 1 2 --acceptance 0.8 1.0 \
    --output-len 96 --repeat-reference $([ $mode = eager ] && echo --enforce-eager --trace-rows) --out $OUT/speculative-mtp-tiny-$mode.json 2>&1 \
    | grep -v Warn | grep -E '^\{"run"|Error|error' | tail -7
done
# fifteenth session (change 44): with speculation on, block-FP8 decode steps (M <= 16) take the tables' one-row
# tiles, where the shipped H100 rows for M = 4 split o_proj's K 4 ways and the shared experts' gate_up otherwise
# than M = 1's. The graphs run now says whether that was the difference (k = 2 equal to no speculation, replays
# equal to their reference)
el pinned-rows-test; timeout 120 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py \
  -k pinned 2>&1 | tail -3 | tee $OUT/gpu-tests-pinned.txt  # each row's bits in 2-16-row steps = in a 1-row step
for mode in ${FULL_MODES:-graphs eager}; do  # FULL_MODES=graphs where the budget holds one full-size run
  el mtp-${L}l-k2-$mode; timeout 150 python3 benchmarks/speculative_mtp.py --layers $L --num-prompts 1 --ks 2 \
    --acceptance 1.0 --output-len 96 --repeat-reference $([ $mode = eager ] && echo --enforce-eager --trace-rows) \
    --out $OUT/speculative-mtp-${L}l-k2-$mode.json 2>&1 | grep -v Warn | grep -E '^\{"run"|Error|error' | tail -4
done
# NGRAM=1 (fifteenth session; needs the bundle's model dirs, carried by c1): n-gram on the Llama-3.1-8B shape, dummy
# weights, k = 2 and 3 against no speculation: do dense verify steps keep the one-row steps' tokens (GEMV tables and
# decode attention's splits are not pinned, docs/speculative.md)?
if [ "${NGRAM:-0}" = 1 ] && [ -d /tmp/peer/models/llama31-8b-dummy ]; then
  el ngram-llama; timeout 150 python3 benchmarks/speculative_ngram.py --model /tmp/peer/models/llama31-8b-dummy \
    --load-format dummy --num-prompts 2 --max-tokens 96 --ks 2 3 --out $OUT/speculative-ngram-llama8b.json 2>&1 \
    | grep -E "^\{'num|Error|error" | tail -4
fi
if h200 && [ "${K1:-0}" = 1 ]; then  # K1=1 where the budget holds it
  el mtp-8l-k1; timeout 200 python3 benchmarks/speculative_mtp.py --layers 8 --num-prompts 1 --ks 1 --acceptance 0.8 1.0 \
    --out $OUT/speculative-mtp-8l.json 2>&1 | grep -v Warn | grep -E '^\{"run"|Error|error' | tail -8
fi
# PREFILL=1 (fourteenth session): our prefill_8x4096 with the CUDA allocator's counts over the timed runs
# (allocator_during_runs: a retry frees the cache and synchronizes), to find its unexplained ~30-48 ms
if [ "${PREFILL:-0}" = 1 ]; then
  el prefill; timeout 150 python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite \
    --git-rev $REV 2>&1 | grep -v Warn | tail -4; cp -r /tmp/suite $OUT/ && pack_dirs
fi
el done
