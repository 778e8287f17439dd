# carry: .peer/vllm026.part01 — ours: R1-8L + MTP batch-1 decode, k = 1, 2, 3 against none (issue 18)
source benchmarks/results/2026-12-06g-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el mtp; timeout 280 python3 benchmarks/speculative_mtp.py --num-prompts 1 --out $OUT/speculative-mtp.json 2>&1 | grep -v Warn | tail -25
el done
