# carry: .peer/vllm026.part01 — the fresh prefill kernel's new options (sweep; its table lands in VDEPLOY_HOME, which
# the engine reads), then ours: prefill 8 x 4096 with whatever the sweep chose
source benchmarks/results/2026-12-06e-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el prefill-sweep; timeout 150 python3 benchmarks/kernels/prefill_attention_sweep.py --new-options --budget-s 100 --reps 10 \
  --out $OUT/prefill_sweep_new.json 2>&1 | grep -v Warn | tail -18
mkdir -p $OUT/tables && cp $VDEPLOY_HOME/kernel_configs/prefill_attention/*.json $OUT/tables/ 2>/dev/null
el prefill; timeout 150 python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite --git-rev "$REV" 2>&1 | grep -v Warning | tail -6
cp /tmp/suite/prefill.json $OUT/vdeploy_prefill_8x4096.json; cp /tmp/suite/hardware.json $OUT/
el done
