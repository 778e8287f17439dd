# second call. Off an H200, issue 18 on what an H100 holds: R1 at 7 layers (3 dense + 4 MoE, ~51 GB) + its MTP
# layer (~12 GB), batch 1, MTP k = 1 and 2 (real drafts, replayed acceptance 0.8 and 1.0) against none (8 layers +
# MTP, ~75 GB, leaves no room for activations and cache on an 80 GB card). On an H200, issue 14: a1's H100 part
# (the prefill profile and the fresh prefill sweep). Both, issue 14: decode attention's configs per batch size (1-8)
# for the Llama-8B and Qwen2-7B heads (decode_attention_sweep.py, new).
source "$(dirname "$0")/common.sh"; gpu
if h200; then
  el prefill-profile; timeout 150 python3 benchmarks/engine/prefill_profile.py --out $OUT/prefill_profile.json 2>&1 | grep -v Warn | tail -14
  el fresh-sweep; timeout 100 python3 benchmarks/kernels/prefill_attention_sweep.py --new-options --budget-s 70 --reps 10 \
    --table-dir $OUT/fresh-tables --out $OUT/prefill_sweep_new.json 2>&1 | grep -v Warn | tail -12
else
  el mtp-7l; timeout 330 python3 benchmarks/speculative_mtp.py --layers 7 --num-prompts 1 --ks 1 2 --acceptance 0.8 1.0 \
    --out $OUT/speculative-mtp-7l.json 2>&1 | grep -v Warn | grep '^{"run"' | tail -12
fi
el decode-sweep; timeout 130 python3 benchmarks/kernels/decode_attention_sweep.py --budget-s 100 --git-rev $REV \
  --table-dir $OUT/decode-tables --out $OUT/decode_attention_sweep.json 2>&1 | grep -v Warn | tail -10
pack_dirs; el done
