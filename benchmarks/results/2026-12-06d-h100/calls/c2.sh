# carry: .peer/vllm026.part00 .peer/vllm026.sha256 — our R1 pair (H200), else our R1-8L profile
source benchmarks/results/2026-12-06d-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
if h200; then
  el r1tp; timeout 200 bash benchmarks/same_lease.sh r1tp
  el r1lat; timeout 120 bash benchmarks/same_lease.sh r1lat
else
  el profile-r1; timeout 250 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 256 --dummy-weights uniform --git-rev "$REV" --out $OUT/profile_r1-8l_uniform.json 2>&1 | grep -v Warn | tail -5
fi
el done
