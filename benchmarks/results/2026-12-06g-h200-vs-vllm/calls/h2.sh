# H100 fallback. carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours: R1 at 4 layers (its MTP layer fits in 80 GB)
# + MTP batch-1 decode, k = 1, 2, 3 against none (issue 18; the H200 runs 8 layers); R1-8L's step profile at batch
# 1 and 256, shared experts on the side stream and inline
source benchmarks/results/2026-12-06g-h200-vs-vllm/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el mtp; timeout 280 python3 benchmarks/speculative_mtp.py --layers 4 --num-prompts 1 --out $OUT/speculative-mtp-4l.json 2>&1 | grep -v Warn | tail -25
el r1-profile; timeout 150 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 256 --dummy-weights uniform --git-rev $REV --out $OUT/profile_r1-8l.json 2>&1 | grep -v Warn | tail -4
el done
