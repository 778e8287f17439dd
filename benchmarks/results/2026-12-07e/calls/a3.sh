# third call (carries .peer/vllm026.part02: the peer unpacks). On an H200, issue 15: vLLM's side of decode_r1_8l
# (VLLM_USE_DEEP_GEMM=0). Off an H200, issue 14: vLLM's FlashAttention-3 beside our fresh prefill attention (the
# peer's site on the path for that one script); issue 19: AWQ 7B batch 1
# (128 / 512, temperature 1.0, dummy weights) on vLLM (awq_marlin) and on ours, one config directory (quant_configs.py's
# AWQ config + the peer's Qwen2 tokenizer).
source "$(dirname "$0")/common.sh"; gpu
if h200; then
  el vllm-r1lat; VLLM_USE_DEEP_GEMM=0 timeout 280 bash /tmp/peer/bench.sh r1lat 2>&1 | grep -E "Avg latency|Error|error" | tail -5
else
  el fa3; PYTHONPATH=$PYTHONPATH:/tmp/peer/site timeout 90 python3 benchmarks/kernels/prefill_attention_backends.py \
    --out $OUT/prefill_backends_fa3.json 2>&1 | grep -v Warn | tail -10
  python3 benchmarks/quant_configs.py /tmp/qmv --models deepseek-r1-distill-qwen-7b --schemes awq > /dev/null
  d=/tmp/qmv/deepseek-r1-distill-qwen-7b-awq
  for f in /tmp/peer/models/qwen2-7b-dummy/*; do [ "$(basename $f)" = config.json ] || cp -r $f $d/; done
  el vllm-awq; (export PYTHONPATH=/tmp/peer/site:$PYTHONPATH HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
    VLLM_USE_FLASHINFER_SAMPLER=0; timeout 200 python3 -m vllm.entrypoints.cli.main bench latency --model $d --load-format dummy \
    --dtype bfloat16 --max-model-len 4096 --batch-size 1 --input-len 128 --output-len 512 --num-iters-warmup 1 --num-iters 3 \
    --output-json $OUT/vllm_latency_qwen7b_awq.json > $OUT/vllm_awq.log 2>&1; grep -E "Avg latency|awq|marlin|Error" $OUT/vllm_awq.log | tail -6)
  el ours-awq; timeout 90 python3 -m vdeploy bench $d --load-format dummy --num-prompts 1 --input-len 128 --output-len 512 \
    --max-model-len 4096 --temperature 1.0 -o $OUT/vdeploy_latency_qwen7b_awq.json 2>&1 | grep -v Warn | tail -2
fi
vllm_logs all
pack_dirs; el done
