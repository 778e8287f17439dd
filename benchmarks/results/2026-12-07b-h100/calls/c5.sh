# carry: .whl (the server wheels) — ours: `vdeploy serve` at saturation (256
# concurrent streams, 512 requests of 1000 in / 128 out) against the offline engine on the same requests (issue 14:
# >= 0.9; 0.72 on the H100 before the engine core moved into its own process)
source benchmarks/results/2026-12-07b-h100/calls/common.sh
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
el serving; timeout 330 python3 benchmarks/engine/gpu_suite.py --out $OUT/serving --only serving --quick --concurrency 256 \
  --git-rev $REV 2>&1 | grep -v Warn | tail -12
el done
