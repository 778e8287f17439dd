# first call (no peer: three machine starts failed and the budget no longer holds the three calls that carry it).
# On an H200, issue 18: R1 8 layers + its MTP layer, batch-1 decode with MTP k = 1 and 2 (real drafts, replayed
# acceptance 0.8 and 1.0) against none; issue 15: ours on R1-8L batch 1, 128 / 1024, temperature 1.0 (R1's published
# config from vdeploy's copy cut to 8 layers, no MTP, no tokenizer; no vLLM run to compare with). Off an H200,
# issue 14: where prefill_8x4096's time goes (its workload through LLM.generate under the torch profiler: kernel
# families, wall minus kernels), the fresh prefill attention's new one-warpgroup tiles (two programs an SM) and the
# kernels torch ships; issue 19: the W4A16 sweep at 1 / 8 / 16 rows on the 7B's layers.
source "$(dirname "$0")/common.sh"; gpu
if h200; then
  el mtp; timeout 330 python3 benchmarks/speculative_mtp.py --num-prompts 1 --ks 1 2 --acceptance 0.8 1.0 \
    --out $OUT/speculative-mtp.json 2>&1 | grep -v Warn | grep '^{"run"' | tail -12
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
  el backends; timeout 50 python3 benchmarks/kernels/prefill_attention_backends.py --out $OUT/prefill_backends.json 2>&1 | grep -v Warn | tail -8
  el sweep-7b; timeout 150 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep --models r1-distill-qwen-7b \
    --sweep-m 1 8 16 --budget-s 120 --out $OUT/sweep-m16-7b 2>&1 | grep -v Warn | tail -9
fi
pack_dirs; el done
