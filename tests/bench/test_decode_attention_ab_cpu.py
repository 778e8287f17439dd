"""benchmarks/kernels/decode_attention_ab.py --device cpu (the interpreter): the A/B script runs end to end with a
baseline copy of the kernel files (here the current ones), checks both against the twins and writes its report."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "kernels" / "decode_attention_ab.py"


def test_ab_runs_and_reports_on_cpu(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--baseline", str(REPO / "kernels" / "decode_attention.py"),
                           "--mla-baseline", str(REPO / "kernels" / "mla_attention.py"), "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "decode_attention_ab.json").read_text())["rows"]
    assert {r["kernel"] for r in rows} == {"decode", "mla"}
    assert all(r["ok"] and r["max_abs_diff"] == 0.0 for r in rows)  # the same file on both sides


def test_decode_sweep_checks_every_candidate_on_cpu(tmp_path):
    """decode_attention_sweep.py --tiny: each candidate config (and the heuristic's) against the twin, the report
    names the best per batch; no table is written from interpreter timings."""
    out = tmp_path / "sweep.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "kernels" / "decode_attention_sweep.py"), "--tiny",
                           "--out", str(out), "--table-dir", str(tmp_path / "tables")],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    (result,) = report["results"].values()
    assert not report["failures"] and result["best"] is not None and not result["table_row"]
    assert not (tmp_path / "tables").exists()
