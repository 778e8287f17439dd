# H200 only, fifth call: issue 14's prefill_8x4096 on an H200, both engines
source "$(dirname "$0")/common.sh"; gpu
el vllm-prefill; ITERS=3 timeout 200 bash /tmp/peer/bench.sh prefill 2>&1 | grep -E "Avg latency|Error|error" | tail -5
vllm_logs prefill
el ours-prefill; timeout 200 python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite \
  --git-rev $REV 2>&1 | grep -v Warn | tail -6; tar czf $OUT/suite.tar.gz -C /tmp suite
pack_dirs; el done
