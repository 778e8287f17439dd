# carry: .peer/vllm026.part02. On an H200 vLLM's R1 throughput (vLLM 0.26 cannot start R1-8L on 80 GB); on an H100
# the prefill pair instead.
source benchmarks/results/2026-12-06c-h100/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > v.tar.xz && tar -xJf v.tar.xz && rm v.tar.xz vllm026.part0?)
if grep -q H200 $OUT/../gpu.txt 2>/dev/null || nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  el vllm-r1tp; VLLM_USE_DEEP_GEMM=0 bash /tmp/peer/bench.sh r1tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
else
  el vllm-prefill; ITERS=3 bash /tmp/peer/bench.sh prefill 2>&1 | grep -E "Avg latency|Error|error" | tail -5
  el vdeploy-prefill; python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite --git-rev "$REV" 2>&1 | grep -v Warning | tail -12
  cp /tmp/suite/prefill.json $OUT/vdeploy_prefill_8x4096.json; cp /tmp/suite/hardware.json $OUT/
fi
el done
