"""benchmarks/kernels/quant_gemm_check.py as a CPU smoke test (--device cpu --tiny, Triton interpreter): every
quantized kernel runs against its twin, the --sweep grid runs, and the JSON report has what the GPU run will fill in."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "kernels" / "quant_gemm_check.py"


def test_tiny_cpu_run_checks_every_kernel_and_writes_the_report(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(tmp_path),
                           "--git-rev", "test-rev", "--sweep"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "quant_gemm_check.json").read_text())
    assert report["ok"] and report["git_revision"] == "test-rev" and report["device"].startswith("CPU")
    rows = report["results"]
    assert {r["kernel"] for r in rows} == {"w4a16", "w4a16_actorder", "w8a8_int8", "w8a8_fp8"}
    assert all(r["ok"] and r["rel_err"] < report["rel_tol"][r["kernel"]] for r in rows)
    assert all(r["ms"] > 0 and r["bf16_ms"] > 0 and r["speedup_vs_bf16"] > 0 for r in rows)
    assert all("weight_bytes_per_s" in r for r in rows if r["m"] == 1)
    sweeps = report["sweeps"]
    assert {s["kernel"] for s in sweeps} == {"w4a16", "w8a8_int8", "w8a8_fp8"}
    assert all(s["ok"] and s["best_ms"] <= s["default_ms"] for s in sweeps)
    assert any(t["config"].get("dot") is False for s in sweeps for t in s["tried"])  # the decode variant was tried
    assert "all ok" in proc.stdout


def test_w4a16_only_compares_old_and_new_default_with_bf16(tmp_path):
    """--w4a16-only (the GPU's ~1-minute decode comparison; here one wall-clock call per variant in the interpreter):
    every row has both defaults checked against the twin, the new one deterministic, and the three timings."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--w4a16-only", "--m", "1", "2",
                           "--out", str(tmp_path), "--git-rev", "test-rev"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "w4a16_decode.json").read_text())
    assert report["ok"] and report["git_revision"] == "test-rev" and not report["cut_short"]
    rows = report["rows"]
    assert {(r["layer"], r["m"]) for r in rows} == {(layer, m) for layer in ("qkv", "down") for m in (1, 2)}
    for r in rows:
        assert r["new_config"]["factored"] and "factored" not in r["old_config"]
        assert r["rel_err_old"] < 1e-2 and r["rel_err_new"] < 1e-2 and r["deterministic"]
        assert r["old_us"] > 0 and r["new_us"] > 0 and r["bf16_us"] > 0


def test_w4a16_factored_sweep_times_tiles_and_checks_each_against_the_twin(tmp_path):
    """--w4a16-factored-sweep (the GPU's tile x K-split grid; two or three tiles in the interpreter) at M 1, 4 and 16:
    every config tried is checked against the twin, the engine's comes first, at M 4 the dequantizing kernel's tiles
    and at 16 the tensor-core tiles are among the candidates, and no table is written off the GPU."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--w4a16-factored-sweep",
                           "--sweep-m", "1", "4", "16", "--out", str(tmp_path), "--git-rev", "test-rev"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "w4a16_factored_sweep.json").read_text())
    assert report["git_revision"] == "test-rev" and not report["cut_short"]
    want = [(layer, m) for layer in ("qkv", "down") for m in (1, 4, 16)]
    assert [(r["layer"], r["m"]) for r in report["rows"]] == want
    for row in report["rows"]:
        engine = row["tried"][0]["config"]  # the heuristic's choice (no table off the GPU)
        if row["m"] == 16:  # the dequantizing kernel; the factored kernel's tensor-core tiles are the candidates
            assert not engine.get("factored") and any(t["config"].get("dot") for t in row["tried"][1:])
        else:
            assert engine["factored"] and engine["block_m"] == row["m"]
        if row["m"] == 4:  # the dequantizing kernel's tiles are candidates too
            assert any(not t["config"].get("factored") for t in row["tried"][1:])
        assert all(t["rel_err"] < 1e-2 and t["us"] > 0 for t in row["tried"])
        assert row["best"]["us"] <= row["default_us"]
    assert not (tmp_path / "tables").exists()
