# Second H100 lease, one call at a6cb558 (no carry): the MLA glue's GPU tests and its timing (calls/rope_time.py)
export PYTHONPATH=/tmp/shim:$PWD TRITON_INTERPRET=0; mkdir -p /tmp/shim && ln -sfn $PWD/kernels /tmp/shim/vdeploy_kernels && ln -sfn $PWD/profiles vdeploy/profiles_data
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py -k rope 2>&1 | tail -2
timeout 40 python3 benchmarks/results/2026-12-06d-h100/calls/rope_time.py 2>&1 | grep -v Warn | tail -5
