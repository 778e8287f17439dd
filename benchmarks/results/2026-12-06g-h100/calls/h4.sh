# H100 fallback. carry: .peer/vllm026.part02 — unpack the peer; vLLM's V2-Lite decode step at 500 rows (engine core in
# this process, so the profiler sees its kernels), then vLLM's V2-Lite 500 × 1000/1000
source benchmarks/results/2026-12-06g-h100/calls/common.sh
cp .peer/vllm026.part02 /tmp/peer/ && (cd /tmp/peer && cat vllm026.part0? > vllm026.tar.xz && sha256sum -c vllm026.sha256 && tar -xJf vllm026.tar.xz && rm vllm026.tar.xz vllm026.part0?)
el vllm-step-compare; PYTHONPATH=/tmp/peer/site:$PYTHONPATH VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_USE_FLASHINFER_SAMPLER=0 \
  timeout 300 python3 benchmarks/engine/decode_step_compare.py --engine vllm --model /tmp/peer/models/dsv2-lite-dummy --out $OUT/step_v2lite_vllm.json > $OUT/vllm_step.log 2>&1; tail -3 $OUT/vllm_step.log
el vllm-dsv2tp-500; N=500 TAG=_500 timeout 200 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
(cd $OUT && tar czf vllm-logs.tar.gz *.log && rm *.log)
el done
