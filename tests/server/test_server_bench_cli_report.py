"""`vdeploy bench --url` on a terminal prints the `vllm bench serve` layout (it used to dump the JSON document);
`--json` keeps stdout pure JSON."""

import json

from typer.testing import CliRunner

from vdeploy.cli.main import app

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
ARGS = ["--num-prompts", "2", "--input-len", "4", "--output-len", "3"]


def test_serving_bench_prints_the_people_report_and_json_on_request(server):
    people = CliRunner().invoke(app, ["bench", "--url", server.url, *ARGS], env=ENV)
    assert people.exit_code == 0, people.output
    assert people.stdout.startswith(f"Serving benchmark: tiny at {server.url}")
    assert "Successful requests" in people.stdout and "P99 TTFT (ms)" in people.stdout
    assert not people.stdout.lstrip().startswith("{")

    machine = CliRunner().invoke(app, ["bench", "--url", server.url, *ARGS, "--json"], env=ENV)
    assert machine.exit_code == 0, machine.output
    report = json.loads(machine.stdout)
    assert (report["benchmark"], report["completed"], report["total_output_tokens"]) == ("serving", 2, 6)
