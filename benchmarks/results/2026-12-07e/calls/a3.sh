# third call (carries .peer/vllm026.part02: the peer unpacks). Issue 14: vLLM's FlashAttention-3 beside our fresh
# prefill attention (the peer's site on the path for that one script), then prefill_8x4096 for both engines. On an
# H200, issue 15: vLLM's side of decode_r1_8l (VLLM_USE_DEEP_GEMM=0) instead of the prefill pair (the fourth call).
source "$(dirname "$0")/common.sh"; gpu
el fa3; PYTHONPATH=$PYTHONPATH:/tmp/peer/site timeout 90 python3 benchmarks/kernels/prefill_attention_backends.py \
  --out $OUT/prefill_backends_fa3.json 2>&1 | grep -v Warn | tail -10
if h200; then
  el vllm-r1lat; VLLM_USE_DEEP_GEMM=0 timeout 300 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
  vllm_logs r1lat
else
  el vllm-prefill; ITERS=3 timeout 200 bash /tmp/peer/bench.sh prefill 2>&1 | grep -E "Avg latency|Error|error" | tail -5
  vllm_logs prefill
  el ours-prefill; timeout 200 python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite \
    --git-rev $REV 2>&1 | grep -v Warn | tail -6; tar czf $OUT/suite.tar.gz -C /tmp suite
fi
pack_dirs; el done
