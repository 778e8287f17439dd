# carry: .peer/vllm026.part00 .peer/vllm026.sha256
source benchmarks/results/2026-12-06d-h200/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el dsv2tp-500; N=500 TAG=_500 timeout 200 bash benchmarks/same_lease.sh dsv2tp
el quant-check; timeout 120 python3 benchmarks/kernels/quant_gemm_check.py --out $OUT 2>&1 | grep -v Warn | tail -30
el done
