# MTP k = 1 at replayed acceptance 0.8 (R1 7 layers + MTP, H100, CUDA graphs) at the revisions around the
# slowdown this lease found (0.934x on 2026-12-07 at 3630917's code, 0.698x at 1a3298d), one engine pair each, then
# --trace-plain 1 at HEAD (eager: where k = 1's real drafts leave plain decoding). carry: .ab (git archive
# tarballs of each revision's vdeploy/, kernels/, profiles/ and the two benchmark scripts)
# (eighteenth session) HEAD also runs k = 2 (change 45's prediction: real drafts token-identical to plain) and the
# GPU test of change 46 (fill_last_emitted queued without a device wait)
source benchmarks/lease_common.sh; gpu
el gpu-test; timeout 90 python3 -m pytest -q -x tests/worker/test_draft_verdict_device.py 2>&1 | tail -2
for rev in ${REVS:-3630917 3b383f2 5325f5a abf826b}; do
  dir=/tmp/ab/$rev; mkdir -p $dir /tmp/ab-shim/$rev; tar xzf .ab/$rev.tar.gz -C $dir
  ln -sfn $dir/kernels /tmp/ab-shim/$rev/vdeploy_kernels; ln -sfn $dir/profiles $dir/vdeploy/profiles_data
  el "mtp-k1 $rev"; (cd $dir && PYTHONPATH=/tmp/ab-shim/$rev:$dir:/tmp/site timeout 120 python3 benchmarks/speculative_mtp.py \
    --layers 7 --num-prompts 1 --ks 1 --acceptance 0.8 --out $OUT/mtp-k1-$rev.json 2>&1 | grep -E '^\{"run"|Error' | tail -3)
done
el "mtp-k12 HEAD"; timeout 200 python3 benchmarks/speculative_mtp.py --layers 7 --num-prompts 1 --ks 1 2 --acceptance 0.8 \
  --out $OUT/mtp-k12-HEAD.json 2>&1 | grep -E '^\{"run"|Error' | tail -6
if [ "${TRACE:-1}" = 1 ]; then el trace-plain; timeout 150 python3 benchmarks/speculative_mtp.py --layers 7 --enforce-eager \
  --trace-plain 1 --output-len 128 --out $OUT/trace-plain-k1.json 2>&1 | grep -E '^\{"k"|Error' | tail -2; fi
el done
