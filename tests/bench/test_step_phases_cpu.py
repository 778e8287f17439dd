"""benchmarks/engine/step_phases.py on the CPU with a tiny random Llama: its hooks still fit the engine (a stale
sampler hook failed a whole GPU call on 2026-12-07): every phase of a decode step is timed, the sampler's included,
and the steps are counted through the asynchronous launch path."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "engine" / "step_phases.py"


def test_step_phases_times_every_phase_of_a_decode_step(tmp_path):
    from vdeploy.checkpoint.synthetic import tiny_config

    model = tmp_path / "tiny-llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(tiny_config("llama", dtype="float32")))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(model), "--num-prompts", "2", "--input-len", "16",
                           "--output-len", "24", "--profile-steps", "0", "--label", "tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    decode = json.loads((out / "tiny.json").read_text())["phases"]["decode"]
    assert decode["steps"] >= 20 and decode["median_num_reqs"] == 2
    for phase in ("schedule", "build", "forward", "logits", "sample", "update", "outputs"):
        assert decode[f"{phase}_ms"] > 0, phase
