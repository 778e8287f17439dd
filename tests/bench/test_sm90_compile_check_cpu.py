"""benchmarks/kernels/sm90_compile_check.py with the installed Triton: every rope_store_kv variant (the engine's
default path for Llama / Qwen2) compiles for sm_90 with no GPU. The interpreter the kernel tests use never compiles,
so a kernel it accepts can still be refused by the compiler (a variable reshaped inside a runtime branch was)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "kernels" / "sm90_compile_check.py"


def test_rope_store_kv_compiles_for_hopper(tmp_path):
    out = tmp_path / "sm90.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "rope", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["results"]) == 12 and not report["failed"]
    assert all(r["ok"] and r["fits_shared"] and r["num_warps"] == 4 for r in report["results"])
