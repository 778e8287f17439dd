# carry: .peer/vllm026.part01
source benchmarks/results/2026-12-06c-h100/calls/common.sh
cp .peer/vllm026.part01 /tmp/peer/
el prefill-sweep; timeout 130 python3 benchmarks/kernels/prefill_attention_sweep.py --budget-s 100 --out $OUT/prefill_sweep.json > $OUT/prefill_sweep.txt 2>&1; grep -v Warn $OUT/prefill_sweep.txt | grep -v "^ *$" | tail -40
cd /tmp && tar czf $OUT/tables.tgz vdeploy-home 2>/dev/null; el done
