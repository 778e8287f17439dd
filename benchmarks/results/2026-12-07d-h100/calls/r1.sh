# the third lease, first call (carries .peer/vllm026.part00 + .sha256). On an H200 — issue 15: ours on R1 8 layers at
# batch 1, 128 / 1024, temperature 1.0, dummy weights drawn as vLLM's (the peer's r1-8l-dummy config: R1's published
# config, 8 layers, no MTP; written here from vdeploy's copy of R1's config, without the tokenizer, because the peer
# unpacks only in r3). On any other GPU: w1.sh (issue 19) instead.
source "$(dirname "$0")/common.sh"; gpu
h200 || { echo "not an H200: w1 instead"; exec bash "$(dirname "$0")/w1.sh"; }
python3 - <<'PY'
import json, pathlib
from vdeploy.model_configs import config_path
c = json.loads(config_path("deepseek-r1").read_text()); c.update(num_hidden_layers=8, num_nextn_predict_layers=0)
p = pathlib.Path("/tmp/r1-8l"); p.mkdir(exist_ok=True); (p / "config.json").write_text(json.dumps(c, indent=1))
PY
el r1lat; timeout 150 python3 -m vdeploy bench /tmp/r1-8l --load-format dummy --dummy-weights uniform --num-prompts 1 \
  --input-len 128 --output-len 1024 --max-model-len 2048 --temperature 1.0 -o $OUT/vdeploy_latency_r1_8l.json 2>&1 \
  | grep -v Warn | tail -4
el done
