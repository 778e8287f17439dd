# carry: .peer/vllm026.part00 .peer/vllm026.sha256
source benchmarks/results/2026-12-06c-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el r1tp-normal; timeout 150 env DUMMY=normal bash benchmarks/same_lease.sh r1tp
el done
