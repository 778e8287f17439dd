# H100, same machine: V2-Lite 500 x 1000/1000 and its prefill alone (500 x 1000/1), R1-8L profile
source benchmarks/results/2026-12-06d-h200/calls/common.sh
el dsv2tp-500; N=500 TAG=_500 timeout 150 bash benchmarks/same_lease.sh dsv2tp
el dsv2-prefill-only; timeout 100 python3 -m vdeploy bench /tmp/peer/models/dsv2-lite-dummy --load-format dummy --num-prompts 500 --input-len 1000 \
    --output-len 1 --max-model-len 2048 --dummy-weights uniform -o $OUT/vdeploy_dsv2lite_prefill_500.json 2>&1 | grep -v Warn | tail -4
el profile-r1; timeout 200 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 256 --git-rev "$REV" --out $OUT/profile_r1-8l.json 2>&1 | grep -v Warn | tail -45
el done
