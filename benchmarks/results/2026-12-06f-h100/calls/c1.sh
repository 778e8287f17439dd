# carry: .whl .peer/models — GPU tests of the kernels new since the last lease (fused FP8 decode linear, one-pass
# sampler) and of the engine on CUDA; the fused-vs-two-step FP8 decode timing and a sweep of the fused path's tiles
# (its tables go to $OUT and into $VDEPLOY_HOME, where this warm machine's later runs read them first); ours: R1-8L
# batch 1
source benchmarks/results/2026-12-06f-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 170 python3 -m pytest -q -p no:cacheprovider tests/worker/test_model_runner_cuda_worker.py \
  "tests/kernels/test_kernel_sampling.py::test_on_the_gpu_at_real_vocabularies" \
  tests/deepseek/test_deepseek_kernels_gpu.py -k "fused_decode or w8a8 or quant or tiny_deepseek or real_vocabularies or graphs or memory_profile or nccl" \
  2>&1 | grep -v Warn | tail -20 > $OUT/gpu-tests.txt; tail -6 $OUT/gpu-tests.txt
el fp8-decode-check; timeout 170 python3 benchmarks/kernels/fp8_decode_check.py --sweep --sweep-m ${SWEEP_M:-1 4} --git-rev $REV --out $OUT 2>&1 | grep -v Warn | tail -80
mkdir -p $VDEPLOY_HOME/kernel_configs/fp8_block_gemm && cp $OUT/fp8_block_gemm/*.json $VDEPLOY_HOME/kernel_configs/fp8_block_gemm/
el r1lat; timeout 120 bash benchmarks/same_lease.sh r1lat
el done
