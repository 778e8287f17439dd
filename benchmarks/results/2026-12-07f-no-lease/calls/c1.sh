# first call. carry: .peer/vllm026.part02, .peer/vllm026.sha256, .peer/models-a.tar.xz (the bundle's llama31-8b,
# dsv2-lite and r1-8l dirs). Issue 15, our side (vLLM's R1-8L needs an H200): decode_r1_8l, throughput_r1_8l,
# throughput_dsv2_lite (1000 x 1000/1000)
source benchmarks/lease_common.sh; gpu
if h200; then
  el r1lat; timeout 100 bash benchmarks/same_lease.sh r1lat
  el r1tp; timeout 150 bash benchmarks/same_lease.sh r1tp
fi
# DSV2=1 (set at call time when the device budget holds vLLM's side too in c3), or any H100
if [ "${DSV2:-0}" = 1 ] || ! h200; then el dsv2tp; timeout 200 bash benchmarks/same_lease.sh dsv2tp; fi
pack_dirs; el done
