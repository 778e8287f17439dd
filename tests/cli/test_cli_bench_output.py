"""`vdeploy bench -o FILE`: a path that cannot be written is refused before the benchmark runs (it used to fail
after the whole run, losing its numbers)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vdeploy.cli.main import app


@pytest.mark.parametrize("target, message", [("missing/r.json", "does not exist"), (".", "is a directory")])
def test_an_unwritable_report_path_fails_before_anything_loads(tmp_path, monkeypatch, target, message):
    import vdeploy.bench.offline as offline

    monkeypatch.setattr(offline, "run_offline_benchmark", lambda *a, **k: pytest.fail("the benchmark ran"))
    done = CliRunner().invoke(app, ["bench", str(tmp_path), "-o", str(tmp_path / target)],
                              env={"COLUMNS": "200", "NO_COLOR": "1", "VDEPLOY_HOME": str(tmp_path)})
    assert done.exit_code == 2
    assert message in " ".join(done.output.split())
