# H100 call 2 — carry: .peer/vllm026.part00 .peer/vllm026.sha256. Ours: V2-Lite 500, R1 at 4 layers (tp, lat)
source benchmarks/results/2026-12-06d-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el dsv2tp-500; N=500 TAG=_500 timeout 160 bash benchmarks/same_lease.sh dsv2tp
cut_r1
el r1tp-4l; TAG=_4l timeout 150 bash benchmarks/same_lease.sh r1tp
el r1lat-4l; TAG=_4l timeout 100 bash benchmarks/same_lease.sh r1lat
el done
