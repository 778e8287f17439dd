# carry: .peer/vllm026.part01 — V2-Lite 500 x 1000/1000 (ours), its prefill alone, and a V2-Lite profile
source benchmarks/results/2026-12-06d-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el dsv2tp-500; N=500 TAG=_500 timeout 150 bash benchmarks/same_lease.sh dsv2tp
el dsv2-prefill-only; timeout 100 python3 -m vdeploy bench /tmp/peer/models/dsv2-lite-dummy --load-format dummy --num-prompts 500 \
  --input-len 1000 --output-len 1 --max-model-len 2048 --dummy-weights uniform -o $OUT/vdeploy_dsv2lite_prefill_500.json 2>&1 | grep -v Warn | tail -3
el profile-v2; timeout 200 python3 benchmarks/deepseek_kernel_profile.py --model v2-lite --batches 1 512 --git-rev "$REV" --out $OUT/profile_v2-lite.json 2>&1 | grep -v Warn | tail -4
el done
