"""README.md opens with the two commands a fresh machine runs; CI (.ci/run) must run the second one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_serve_then_tests():
    serve, tests = readme_commands()[:2]
    assert serve.startswith("pip install torch==2.13.0") and serve.endswith("vdeploy serve")
    assert "'.[test]'" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines
