# H100 fallback. carry: .peer/vllm026.part00 .peer/vllm026.sha256 — R1-8L's step profile at batch 1 and 256, the
# shared experts on the side stream and inline (change 34)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el r1-profile; timeout 170 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 256 --dummy-weights uniform --git-rev $REV --out $OUT/profile_r1-8l.json 2>&1 | grep -v Warn | tail -4
el done
