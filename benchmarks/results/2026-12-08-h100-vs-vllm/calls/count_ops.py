"""Top-level aten ops a decode step of the tiny DeepSeek-V3 + MTP on the CPU (torch twins), k = argv[1]: run from a
revision's tree, e.g. `git archive REV vdeploy kernels profiles benchmarks/speculative_mtp.py | tar x -C /tmp/ab/REV`,
a shim dir with vdeploy_kernels -> /tmp/ab/REV/kernels, then from /tmp/ab/REV:
`PYTHONPATH=/tmp/ab-shim/REV:/tmp/ab/REV python count_ops.py 1` (2026-12-08: 1,073 at 3630917, 1,098 at 74301ba)."""
import sys, tempfile, collections
from pathlib import Path
sys.path.insert(0, "benchmarks")
import torch
import speculative_mtp as sm
from vdeploy.engine.llm import LLM
k = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    model = sm.write_model_dir(Path(tmp), True, 2)
    spec = {"method": "mtp", "num_speculative_tokens": k} if k else None
    with LLM(str(model), load_format="dummy", seed=0, max_model_len=256, speculative_config=spec,
             dtype="float32", device="cpu") as llm:
        prompt = list(range(10, 74))
        sm.decode_run(llm, "warm", prompt, 16)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            r = sm.decode_run(llm, "r0", prompt, 64)
        steps = r["steps_after_first"] + 1
        ev = [e for e in prof.events() if e.name.startswith("aten::")]
        top = collections.Counter(e.name for e in ev if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
        print(f"k={k} steps={steps} top-level aten ops/step={sum(top.values())/steps:.1f}")
        for name, n in top.most_common(12):
            print(f"   {name} {n/steps:.2f}")
