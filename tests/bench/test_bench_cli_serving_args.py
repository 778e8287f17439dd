"""`vdeploy bench --url --request-rate 0` is a usage error: it used to run every request at once and report the rate
as "inf", a different benchmark from the one asked for (vLLM's Poisson arrivals need a rate above 0)."""

from __future__ import annotations

from typer.testing import CliRunner

from vdeploy.cli.main import app


def test_a_zero_request_rate_is_refused_before_any_request(tmp_path):
    done = CliRunner().invoke(app, ["bench", "--url", "http://127.0.0.1:9", "--request-rate", "0"],
                              env={"COLUMNS": "200", "NO_COLOR": "1", "VDEPLOY_HOME": str(tmp_path)})
    assert done.exit_code == 2, (done.output, done.exception)
    assert "--request-rate" in done.output and "above 0" in " ".join(done.output.split())
