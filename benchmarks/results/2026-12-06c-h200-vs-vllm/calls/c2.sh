# carry: .peer/vllm026.part00 .peer/vllm026.sha256
source benchmarks/results/2026-12-06c-h200-vs-vllm/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el r1tp-uniform; bash benchmarks/same_lease.sh r1tp
el r1tp-normal; DUMMY=normal bash benchmarks/same_lease.sh r1tp
el r1lat; bash benchmarks/same_lease.sh r1lat
el dsv2tp500; N=500 bash benchmarks/same_lease.sh dsv2tp; mv $OUT/vdeploy_throughput_dsv2lite.json $OUT/vdeploy_throughput_dsv2lite_500.json
el done
