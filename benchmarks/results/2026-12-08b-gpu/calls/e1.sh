# Eighteenth session, one call: the GPU tests of this session's changes (change 46's no-wait test, the sampler's
# strided reads compiled, the kernels' edge inputs), then MTP on R1 at 7 layers at HEAD (k = 0, 1, 2: change 45's
# token identity, change 46's step time) and at 3630917 (the 2026-12-07 lease's code, k = 0, 1) in the same lease.
# carry: .ab (git archive tarballs, see ../../2026-12-08-h100-vs-vllm/README.md)
source benchmarks/lease_common.sh; gpu
el gpu-tests; timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests/worker/test_draft_verdict_device.py \
  tests/kernels/test_kernel_edge_inputs.py tests/kernels/test_kernel_sampling.py 2>&1 | tail -4
el "mtp HEAD"; timeout 230 python3 benchmarks/speculative_mtp.py --layers 7 --num-prompts 1 --ks 1 2 --acceptance 0.8 \
  --out $OUT/mtp-k12-HEAD.json 2>&1 | grep -E '^\{"run"|Error' | tail -7
for rev in ${REVS:-3630917}; do
  dir=/tmp/ab/$rev; mkdir -p $dir /tmp/ab-shim/$rev; tar xzf .ab/$rev.tar.gz -C $dir
  ln -sfn $dir/kernels /tmp/ab-shim/$rev/vdeploy_kernels; ln -sfn $dir/profiles $dir/vdeploy/profiles_data
  el "mtp-k1 $rev"; (cd $dir && PYTHONPATH=/tmp/ab-shim/$rev:$dir:/tmp/site timeout 130 python3 benchmarks/speculative_mtp.py \
    --layers 7 --num-prompts 1 --ks 1 --acceptance 0.8 --out $OUT/mtp-k1-$rev.json 2>&1 | grep -E '^\{"run"|Error' | tail -3)
done
el done
