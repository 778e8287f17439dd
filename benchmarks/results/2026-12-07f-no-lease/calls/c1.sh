# first call. carry: .peer/vllm026.part02, .peer/vllm026.sha256, .peer/models-a.tar.xz (the bundle's llama31-8b,
# dsv2-lite and r1-8l dirs). Issue 15, our side: decode_r1_8l and throughput_r1_8l (on an 80 GB card at 6 layers,
# files tagged _6l: r1_fit in lease_common.sh), throughput_dsv2_lite (1000 x 1000/1000) with DSV2=1; MTP k = 2
source benchmarks/lease_common.sh; gpu; r1_fit
el r1lat$R1TAG; TAG=$R1TAG timeout 100 bash benchmarks/same_lease.sh r1lat
el r1tp$R1TAG; TAG=$R1TAG timeout 150 bash benchmarks/same_lease.sh r1tp
# DSV2=1: throughput_dsv2_lite too (when the device budget holds vLLM's side in c3)
if [ "${DSV2:-0}" = 1 ]; then el dsv2tp; timeout 200 bash benchmarks/same_lease.sh dsv2tp; fi
# MTP=1 (default): MTP k = 2 with change 44's pinned decode tiles (d1.sh's graphs run), in the same call
if [ "${MTP:-1}" = 1 ]; then FULL_MODES=graphs TINY=0 bash benchmarks/results/2026-12-07f-no-lease/calls/d1.sh; fi
pack_dirs; el done
