# carry: .peer/vllm026.part01 — fresh prefill attention: ours against the kernels torch ships (issue 14,
# prefill_8x4096)
source benchmarks/results/2026-12-07b-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el backends; timeout 90 python3 benchmarks/kernels/prefill_attention_backends.py --out $OUT/prefill_backends.json 2>&1 | grep -v Warn | tail -12
el done
