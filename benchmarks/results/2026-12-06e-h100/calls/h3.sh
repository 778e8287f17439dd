# run inline as call 3 (carry .peer/vllm026.part01), with kernels/fused_moe.py's SILU_A branch switched off (61168b3's path)
source benchmarks/results/2026-12-06e-h100/calls/common.sh; cp .peer/vllm026.part01 /tmp/peer/
el dsv2tp-500; N=500 TAG=_500 timeout 150 bash benchmarks/same_lease.sh dsv2tp
el moe-fusion-nosilu; timeout 60 python3 benchmarks/kernels/moe_fusion_check.py --out $OUT/moe_fusion_no_silu_a.json 2>&1 | grep -v Warn | tail -8; el done
