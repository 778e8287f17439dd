# first call (carries .peer/vllm026.part00 + .sha256), any GPU. On an H200, issue 15: ours on R1 8 layers at batch 1,
# 128 / 1024, temperature 1.0 (R1's published config from vdeploy's copy, cut to 8 layers, no MTP, no tokenizer: the
# peer unpacks only in the third call), then our fresh prefill attention beside the kernels torch ships. Off an H200,
# issue 14: where prefill_8x4096's time goes (the benchmark's workload through LLM.generate under the torch profiler:
# kernel families, wall minus kernels), the fresh prefill attention's new one-warpgroup tiles (two programs an SM)
# and the kernels torch ships; issue 19: the W4A16 sweep at 1 / 8 / 16 rows on the 7B's layers (tables kept in
# $VDEPLOY_HOME for the later calls).
source "$(dirname "$0")/common.sh"; gpu
if h200; then
  python3 - <<'PY'
import json, pathlib
from vdeploy.model_configs import config_path
c = json.loads(config_path("deepseek-r1").read_text()); c.update(num_hidden_layers=8, num_nextn_predict_layers=0)
p = pathlib.Path("/tmp/r1-8l"); p.mkdir(exist_ok=True); (p / "config.json").write_text(json.dumps(c, indent=1))
PY
  el r1lat; timeout 170 python3 -m vdeploy bench /tmp/r1-8l --load-format dummy --dummy-weights uniform --num-prompts 1 \
    --input-len 128 --output-len 1024 --max-model-len 2048 --temperature 1.0 -o $OUT/vdeploy_latency_r1_8l.json 2>&1 \
    | grep -v Warn | tail -4
else
  el prefill-profile; timeout 150 python3 benchmarks/engine/prefill_profile.py --out $OUT/prefill_profile.json 2>&1 | grep -v Warn | tail -14
  el fresh-sweep; timeout 100 python3 benchmarks/kernels/prefill_attention_sweep.py --new-options --budget-s 70 --reps 10 \
    --table-dir $OUT/fresh-tables --out $OUT/prefill_sweep_new.json 2>&1 | grep -v Warn | tail -12
fi
el backends; timeout 60 python3 benchmarks/kernels/prefill_attention_backends.py --out $OUT/prefill_backends.json 2>&1 | grep -v Warn | tail -8
if ! h200; then
  el sweep-7b; timeout 150 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep --models r1-distill-qwen-7b \
    --sweep-m 1 8 16 --budget-s 120 --out $OUT/sweep-m16-7b 2>&1 | grep -v Warn | tail -9
  mkdir -p $VDEPLOY_HOME/kernel_configs/w4a16 && cp $OUT/sweep-m16-7b/tables/w4a16/*.json $VDEPLOY_HOME/kernel_configs/w4a16/ 2>/dev/null
fi
pack_dirs; el done
