# (ran as a command line, after k3 on the same machine) rows 1 and 2 of four shapes set to x1's measured fused winners
source benchmarks/results/2026-12-06f-h100/calls/common.sh; python3 - <<'PY'
import json, glob, os
d = os.environ["VDEPLOY_HOME"] + "/kernel_configs/fp8_block_gemm"
best = {"N2112-K7168": dict(block_n=32, num_stages=3, split_k=8, swap_ab=False),
        "N24576-K1536": dict(block_n=64, num_stages=3, split_k=1, swap_ab=True),
        "N36864-K7168": dict(block_n=64, num_stages=3, split_k=1, swap_ab=True),
        "N4096-K7168": dict(block_n=64, num_stages=3, split_k=8, swap_ab=False)}
for f in glob.glob(d + "/*.json"):
    t = json.load(open(f)); key = "-".join(os.path.basename(f).split("-")[:2])
    if key in best:
        for m in ("1", "2"):
            t[m] = {"block_m": 16, "num_warps": 4, **best[key]}
    json.dump(t, open(f, "w"))
t = {m: {"block_m": 16, "num_warps": 4, **best["N2112-K7168"]} for m in ("1", "2")}
t.update({"4": {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 4, "fused": False},
          "64": {"block_m": 64, "block_n": 64, "num_warps": 4, "num_stages": 4}})
json.dump(t, open(d + "/N2112-K7168-block128x128-NVIDIA_H100_80GB_HBM3.json", "w"))
PY
timeout 100 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 --prefill-reqs 1 --prefill-len 256 --iters 5 --dummy-weights uniform --git-rev abdd9b9-best --out $OUT/profile_r1-8l_b1_best.json 2>&1 | grep -v Warn | tail -3
