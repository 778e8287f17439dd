"""benchmarks/speculative_mtp.py smoke-runs on CPU with a tiny DeepSeek-V3: the REPLAY draft source (benchmark-only)
gives the acceptance it is asked for, every replay run reproduces its reference (the real-draft run of the same k),
and on CPU in fp32 the speculative runs keep the plain run's greedy tokens; --trace-rows compares the runs' rows
module by module."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_speculative_mtp_benchmark_smoke_runs_on_cpu(tmp_path):
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speculative_mtp.py"), "--tiny", "--ks", "2",
                           "--acceptance", "0", "1.0", "--prompt-len", "8", "--output-len", "12",
                           "--num-prompts", "1", "--enforce-eager", "--trace-rows", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {(r["k"], r["replay_acceptance"]): r for r in json.loads(out.read_text())["runs"]}
    assert all(r["identical_tokens"] for key, r in runs.items() if key[1] is not None)
    assert all(r["same_tokens_as_no_speculation"] for key, r in runs.items() if key[1] is None)
    assert runs[(2, 0.0)]["acceptance_rate"] == 0.0
    assert runs[(2, 1.0)]["acceptance_rate"] == 1.0 and runs[(2, 1.0)]["mean_accepted_length"] > 2
    assert "real drafts" in runs[(2, None)]["run"] and "REPLAY" in runs[(2, 1.0)]["run"]
    # the module-by-module trace (benchmarks/row_trace.py) ran both again and compared decode rows' bytes
    trace = runs[(2, None)]["row_trace"]
    assert trace["reference_reproduced"] and trace["replay_matches"] and trace["shared_keys"] > 0
    assert trace["first"] is None or trace["first"]["position"] >= 8
