# carry: .whl .peer/models — GPU checks of the DeepSeek kernels (the review refactor's and the MoE epilogue's first GPU
# run), the fused-vs-separate MoE epilogue timing, then ours: R1-8L pair, V2-Lite 500
# (updated after this session's H100 lease: the GPU tests of every kernel changed since, and vLLM timeouts that allow its
# first start's compiles; c4.sh already gave vLLM 300 s for R1 there)
source benchmarks/results/2026-12-06e-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 260 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py \
  tests/worker/test_model_runner_cuda_worker.py tests/models/test_quant_gpu.py \
  "tests/deepseek/test_mla_prefill_kernel.py::test_mla_prefill_real_shapes_on_gpu" \
  "tests/kernels/test_kernel_sampling.py::test_on_the_gpu_at_real_vocabularies" 2>&1 | grep -v Warn | tail -20 > $OUT/gpu-tests.txt; tail -6 $OUT/gpu-tests.txt
el moe-fusion-check; timeout 90 python3 benchmarks/kernels/moe_fusion_check.py --out $OUT/moe_fusion.json 2>&1 | grep -v Warn | tail -12
el r1tp; timeout 200 bash benchmarks/same_lease.sh r1tp
el r1lat; timeout 120 bash benchmarks/same_lease.sh r1lat
el dsv2tp-500; N=500 TAG=_500 timeout 150 bash benchmarks/same_lease.sh dsv2tp
el done
