# H100 call 7 (run inline at 173a9f3's code: the test fixes; no carry): GPU tests again, the 16-head MLA decode sweep, V2-Lite 500 again
source benchmarks/results/2026-12-06d-h100/calls/common.sh
el tests; timeout 90 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_mla_prefill_kernel.py tests/deepseek/test_deepseek_kernels_gpu.py -k "gpu or router" 2>&1 | grep -v Warn | tail -4 | tee $OUT/gpu-tests-rerun.txt
el mla16-sweep; timeout 150 python3 benchmarks/kernels/mla_decode_sweep.py --heads 16 --reps 8 --out $OUT/mla_decode_sweep_h16.json 2>&1 | grep -E "best|wrote|FAIL|compiled" | tail -8
cp /tmp/vdeploy-home/kernel_configs/*/*.json $OUT/ 2>/dev/null
el dsv2tp-500-again; N=500 TAG=_500_h16 timeout 110 bash benchmarks/same_lease.sh dsv2tp | tail -3
el done
