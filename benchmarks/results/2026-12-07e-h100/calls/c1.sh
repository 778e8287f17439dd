# the one call the budget still holds (six machine starts failed first; ~1,000 s of the 1,800 s went to them), so the
# most telling runs only, each with a time limit. Issue 18: R1 + its MTP layer, batch-1 greedy decode with MTP k = 1
# and 2 (real drafts; replayed acceptance 0.8 and 1.0) against none: 8 layers on an H200, 7 on an H100 (3 dense + 4
# MoE, ~51 GB, + the MTP layer ~12 GB; 8 + MTP ~75 GB leaves no room for activations and cache on 80 GB).
# Issue 14: where prefill_8x4096's time goes (its workload through LLM.generate under the torch profiler: kernel
# families, wall minus kernels); decode attention's configs per batch size 1-8 for the Llama-8B and Qwen2-7B heads
# (decode_attention_sweep.py, new; tables under decode-tables/).
source "$(dirname "$0")/common.sh"; gpu
layers=7; h200 && layers=8
el mtp-${layers}l; timeout 260 python3 benchmarks/speculative_mtp.py --layers $layers --num-prompts 1 --ks 1 2 \
  --acceptance 0.8 1.0 --out $OUT/speculative-mtp-${layers}l.json 2>&1 | grep -v Warn | grep '^{"run"' | tail -12
el prefill-profile; timeout 120 python3 benchmarks/engine/prefill_profile.py --repeats 2 --out $OUT/prefill_profile.json 2>&1 \
  | grep -v Warn | tail -14
el decode-sweep; timeout 100 python3 benchmarks/kernels/decode_attention_sweep.py --budget-s 70 --git-rev $REV \
  --table-dir $OUT/decode-tables --out $OUT/decode_attention_sweep.json 2>&1 | grep -v Warn | tail -10
pack_dirs; el done
