# first call. carry: .peer/vllm026.part02, .peer/vllm026.sha256, .peer/models-a.tar.xz (llama31-8b, dsv2-lite, r1-8l
# dirs). Our side of decode_8b, prefill_8x4096 (gpu_suite, with the copy/matmul ceilings), and on an H200 of
# decode_r1_8l, throughput_r1_8l (vLLM's R1-8L needs an H200) and throughput_dsv2_lite (1000 x 1000/1000)
source "$(dirname "$0")/common.sh"; gpu
el lat; timeout 100 bash benchmarks/same_lease.sh lat
el prefill; timeout 150 python3 benchmarks/engine/gpu_suite.py --only hardware,prefill --quick --out /tmp/suite --git-rev $REV \
  2>&1 | grep -v Warn | tail -4; cp -r /tmp/suite $OUT/
if h200; then
  el r1lat; timeout 100 bash benchmarks/same_lease.sh r1lat
  el r1tp; timeout 150 bash benchmarks/same_lease.sh r1tp
fi
el dsv2tp; timeout 200 bash benchmarks/same_lease.sh dsv2tp
pack_dirs; el done
