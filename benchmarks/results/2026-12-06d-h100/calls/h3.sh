# H100 call 3 — carry: .peer/vllm026.part01. V2-Lite prefill alone (ours), profiles (V2-Lite; R1-8L on vLLM's draw)
source benchmarks/results/2026-12-06d-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el dsv2-prefill-only; timeout 100 python3 -m vdeploy bench /tmp/peer/models/dsv2-lite-dummy --load-format dummy --num-prompts 500 \
  --input-len 1000 --output-len 1 --max-model-len 2048 --dummy-weights uniform -o $OUT/vdeploy_dsv2lite_prefill_500.json 2>&1 | grep -v Warn | tail -3
el profile-v2; timeout 170 python3 benchmarks/deepseek_kernel_profile.py --model v2-lite --batches 1 512 --git-rev "$REV" --out $OUT/profile_v2-lite.json 2>&1 | grep -v Warn | tail -3
el done
