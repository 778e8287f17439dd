# carry: .peer/vllm026.part00 .peer/vllm026.sha256 — ours: Qwen2-7B 1000 x 1000/1000, sampling at temperature 1.0 as vLLM does
# (decode_8b and prefill_8x4096 are not re-run: their code paths have not changed since 2026-12-02's ratios)
source benchmarks/results/2026-12-06e-h100/calls/common.sh
cp .peer/vllm026.part00 .peer/vllm026.sha256 /tmp/peer/
el tp; timeout 220 bash benchmarks/same_lease.sh tp
el done
