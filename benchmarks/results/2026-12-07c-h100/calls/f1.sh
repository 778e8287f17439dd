# any GPU, the call that carries the peer's last part (it unpacks) — issue 19: W4A16 batch 1 against vLLM's AWQ
# (Marlin on Hopper) on the same dummy AWQ config (the peer's qwen2-7b-dummy, the R1-Distill-Qwen-7B shape, with
# AutoAWQ's GEMM quantization_config), ours and vLLM's, and both engines' bf16 at batch 1 for the ratio of ratios
source "$(dirname "$0")/common.sh"
rm -rf /tmp/qm-awq && cp -r /tmp/peer/models/qwen2-7b-dummy /tmp/qm-awq && python3 - <<'PY'
import json; p = "/tmp/qm-awq/config.json"; c = json.load(open(p))
c["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
json.dump(c, open(p, "w"), indent=1)
PY
for m in qm-awq peer/models/qwen2-7b-dummy; do
  el ours-$m; timeout 90 python3 -m vdeploy bench /tmp/$m --load-format dummy --num-prompts 1 --input-len 128 \
    --output-len 1024 --max-model-len 4096 -o $OUT/vdeploy_latency_$(basename $m).json 2>&1 | grep -v Warn | tail -2
  el vllm-$m; (export PYTHONPATH=/tmp/peer/site:$PYTHONPATH HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_USE_FLASHINFER_SAMPLER=0
    timeout 200 python3 -m vllm.entrypoints.cli.main bench latency --model /tmp/$m --load-format dummy --dtype bfloat16 \
    --max-model-len 4096 --batch-size 1 --input-len 128 --output-len 1024 --num-iters-warmup 2 --num-iters 3 \
    --output-json $OUT/vllm_latency_$(basename $m).json > $OUT/vllm_$(basename $m).log 2>&1); grep -E "Avg latency|Error" $OUT/vllm_$(basename $m).log | tail -2
done
vllm_logs awq; el done
