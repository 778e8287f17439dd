# any GPU. carry: .whl (the server wheels) — issue 14: serving at saturation on a decode-heavy workload (the ninth
# session's 1.036 of offline was 1000 in / 128 out, prefill-heavy); 1000 in / 512 out at 256 streams streams ~3x more
source "$(dirname "$0")/common.sh"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
el serving; timeout 420 python3 benchmarks/engine/gpu_suite.py --out $OUT/serving --only serving --quick --concurrency 256 \
  --serving-lens 1000/512 --git-rev $REV 2>&1 | grep -v Warn | tail -12
el done
