# carry: .peer/vllm026.part01
source benchmarks/results/2026-12-06d-h200/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el profile-r1; timeout 170 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 256 --git-rev "$REV" --out $OUT/profile_r1-8l.json 2>&1 | grep -v Warn | tail -40
el profile-v2; timeout 170 python3 benchmarks/deepseek_kernel_profile.py --model v2-lite --batches 1 512 --git-rev "$REV" --out $OUT/profile_v2-lite.json 2>&1 | grep -v Warn | tail -40
el done
