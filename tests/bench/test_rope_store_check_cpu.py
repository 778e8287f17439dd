"""benchmarks/kernels/rope_store_check.py as a CPU smoke test (--tiny, Triton interpreter): the fused rotary + cache
store against rotary + store_kv, timed, and the JSON report written as the GPU run writes it."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "kernels" / "rope_store_check.py"


def test_tiny_cpu_run_checks_and_reports(tmp_path):
    out = tmp_path / "rope_store.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--reps", "1", "--tokens", "1", "7", "--out",
                           str(out)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and [c["tokens"] for c in report["cases"]] == [1, 7]
    for case in report["cases"]:
        check = case["check_float32_cache"]
        assert check["ok"] and check["cache_mismatched_bytes"] == 0 and check["q_max_abs_diff"] == 0
        assert set(case["timing"]) == {"separate", "fused", "fused_keep_k"}
        assert all(t["eager_us"] > 0 for t in case["timing"].values())
    assert "all ok" in proc.stdout
