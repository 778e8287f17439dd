# (ran as a command line) the same with local H100 tables = the H200 tables with every decode row two-step
source benchmarks/results/2026-12-06f-h100/calls/common.sh; python3 - <<'PY'
import json, glob, os
d = os.environ["VDEPLOY_HOME"] + "/kernel_configs/fp8_block_gemm"; os.makedirs(d, exist_ok=True)
for f in glob.glob("kernels/configs/fp8_block_gemm/*NVIDIA_H200.json"):
    t = json.load(open(f)); t = {m: ({**c, "fused": False} if int(m) <= 16 else c) for m, c in t.items()}
    json.dump(t, open(os.path.join(d, os.path.basename(f).replace("NVIDIA_H200", "NVIDIA_H100_80GB_HBM3")), "w"))
PY
ls $VDEPLOY_HOME/kernel_configs/fp8_block_gemm/ | head -3; timeout 100 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 --prefill-reqs 1 --prefill-len 256 --iters 5 --dummy-weights uniform --git-rev abdd9b9-two-step --out $OUT/profile_r1-8l_b1_two_step.json 2>&1 | grep -v Warn | tail -3
