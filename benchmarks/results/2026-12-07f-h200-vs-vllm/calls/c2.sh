# second call. carry: .peer/vllm026.part00, .peer/models-b.tar.xz (qwen2-7b dir; tests/ left out of the tree so both
# fit). Our side of throughput_qwen2_7b; on an H200, issue 18: R1 8 layers + its MTP layer, batch 1, MTP k = 1
# and 2, real drafts and replayed acceptance 0.8 / 1.0 against none (where k = 2 replays leave their reference: first_mismatch)
source "$(dirname "$0")/common.sh"; gpu
el tp; timeout 200 bash benchmarks/same_lease.sh tp
if h200; then
  el mtp; timeout 330 python3 benchmarks/speculative_mtp.py --layers 8 --num-prompts 1 --ks 1 2 --acceptance 0.8 1.0 \
    --out $OUT/speculative-mtp-8l.json 2>&1 | grep -v Warn | grep -E '^\{"run"|Error|error' | tail -8
fi
pack_dirs; el done
