# run inline as call 2 (carry .peer/vllm026.part00 .peer/vllm026.sha256), right after g1.sh, to keep the machine warm
source benchmarks/results/2026-12-06e-h100/calls/common.sh; cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el prefill-sweep; timeout 150 python3 benchmarks/kernels/prefill_attention_sweep.py --new-options --budget-s 100 --reps 10 --out $OUT/prefill_sweep_new.json 2>&1 | grep -v Warn | tail -18
mkdir -p $OUT/tables && cp $VDEPLOY_HOME/kernel_configs/prefill_attention/*.json $OUT/tables/ 2>/dev/null; el done
