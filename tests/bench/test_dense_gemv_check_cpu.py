"""benchmarks/kernels/dense_gemv_check.py as a CPU smoke test (--device cpu --tiny, Triton interpreter): every tile
runs against the matmul at each M, and the report has what the GPU run fills in (tables are written on CUDA only)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "kernels" / "dense_gemv_check.py"


def test_tiny_cpu_run_checks_every_tile_and_writes_the_report(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--m", "1", "3", "--out",
                           str(tmp_path), "--git-rev", "test-rev"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "dense_gemv_check.json").read_text())
    assert report["ok"] and report["git_revision"] == "test-rev" and not report["cut_short"]
    rows = report["rows"]
    assert [(r["layer"], r["m"]) for r in rows] == [("o", 1), ("down", 1), ("o", 3), ("down", 3)]
    assert all(r["best"] and r["cublas_us"] > 0 and all(t["rel_err"] < 1e-2 for t in r["tried"]) for r in rows)
    assert {r["best"]["config"]["block_m"] for r in rows} == {1, 4}
    assert not (tmp_path / "tables").exists()
