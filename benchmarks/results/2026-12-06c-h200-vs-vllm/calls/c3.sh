# carry: .peer/vllm026.part01
source benchmarks/results/2026-12-06c-h200-vs-vllm/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el suite; bash benchmarks/same_lease.sh suite
el profile; python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 256 --git-rev $REV --out $OUT/profile_r1-8l.json 2>&1 | grep -v Warn | tail -8
el done
