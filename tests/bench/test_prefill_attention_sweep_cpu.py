"""benchmarks/kernels/prefill_attention_sweep.py as a CPU smoke test (--tiny, Triton interpreter): every config of
both kernels is checked against the twin, the tables and the JSON report are written as the GPU run writes them."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "kernels" / "prefill_attention_sweep.py"


def test_tiny_cpu_run_checks_every_config_and_writes_tables(tmp_path):
    out, tables = tmp_path / "sweep.json", tmp_path / "tables"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--reps", "1", "--out", str(out),
                           "--table-dir", str(tables)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and set(report["cases"]) == {"fresh", "prefix"}
    assert set(report["cases"]["fresh"]["variants"]) == {"paged", "fresh"}
    assert set(report["cases"]["prefix"]["variants"]) == {"paged"}
    rows = [r for c in report["cases"].values() for v in c["variants"].values() for r in v["rows"]]
    assert rows and all(r["ok"] and r["ms"] > 0 for r in rows)
    paged = json.loads((tables / "paged-D32-G2-float32-cpu.json").read_text())
    assert set(paged) == {"24", "40"}
    # a fresh table only where the fresh kernel's best beat the paged kernel's (the engine's rule for taking it)
    fresh_case = report["cases"]["fresh"]["variants"]
    fresh_file = tables / "fresh-D32-G2-float32-cpu.json"
    faster = min(r["ms"] for r in fresh_case["fresh"]["rows"]) < fresh_case["paged"]["best"]["ms"]
    assert fresh_file.is_file() == faster
    if faster:
        fresh = json.loads(fresh_file.read_text())
        assert set(fresh) == {"40"} and "pack" in fresh["40"]
    assert "all ok" in proc.stdout


def test_tiny_new_options_run_compares_each_option_with_the_shipped_config(tmp_path):
    # --new-options: the fresh kernel only, the shipped table's config (in-kernel descriptors) first, then its
    # host-descriptor form and another tile, each checked against the twin and timed against the first row
    out = tmp_path / "new.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--new-options", "--reps", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and set(report["cases"]) == {"fresh"}
    case = report["cases"]["fresh"]
    assert set(case["variants"]) == {"fresh"}
    rows = case["variants"]["fresh"]["rows"]
    assert len(rows) == 3 and all(r["ok"] and r["tflops"] > 0 for r in rows)
    configs = [r["config"] for r in rows]
    assert all(set(c) == {"block_m", "block_n", "pack", "num_warps", "num_stages", "tma", "device_tma"}
               for c in configs)  # the removed options are gone from the configs (and so from written tables)
    assert configs[0]["tma"] and configs[0]["device_tma"]
    assert configs[1] == dict(configs[0], device_tma=False)
    assert len(case["vs_shipped"]) == 2 and "skipped" not in case


def test_shipped_fresh_is_the_h100_table():
    # --new-options' baseline row is the shipped table's config
    from benchmarks.kernels.prefill_attention_sweep import SHIPPED_FRESH

    table = REPO / "kernels" / "configs" / "prefill_attention" / "fresh-D128-G4-bfloat16-NVIDIA_H100_80GB_HBM3.json"
    assert json.loads(table.read_text()) == {"4096": SHIPPED_FRESH}
