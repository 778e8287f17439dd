# after c1 (MTP stopped at engine start: an FP8 table row over Hopper's shared memory, fixed in 42ed23b), issue 18:
# R1 at 7 layers + its MTP layer on the H100, batch 1, MTP k = 1 and 2 (real drafts, replayed acceptance 0.8 and 1.0)
# against none
source "$(dirname "$0")/common.sh"; gpu
el mtp-7l; timeout 230 python3 benchmarks/speculative_mtp.py --layers 7 --num-prompts 1 --ks 1 2 --acceptance 0.8 1.0 \
  --out $OUT/speculative-mtp-7l.json 2>&1 | grep -v Warn | grep -E '^\{"run"|Error|error' | tail -14
el done
