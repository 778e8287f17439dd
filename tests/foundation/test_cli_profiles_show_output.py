"""`vdeploy profiles show NAME`: piped, it is the YAML file byte for byte (a start for a custom profile); on a
terminal, long comments wrap instead of being cropped at the console width (which used to cut them off)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from vdeploy.cli.main import app
from vdeploy.profiles import get_profile

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_piped_show_is_the_profile_file_exactly():
    result = CliRunner().invoke(app, ["profiles", "show", "demo-cpu"], env={"COLUMNS": "40"})
    assert result.exit_code == 0
    with open(get_profile("demo-cpu").source) as f:
        assert result.stdout == f.read()


def test_terminal_show_wraps_long_comments_instead_of_cropping():
    result = CliRunner().invoke(app, ["profiles", "show", "demo-cpu"], env={"COLUMNS": "60", "FORCE_COLOR": "1"})
    assert result.exit_code == 0
    words = " ".join(ANSI.sub("", result.stdout).split())
    assert "demo-cpu (" in words  # the title line of the terminal view
    with open(get_profile("demo-cpu").source) as f:
        longest = max(f.read().splitlines(), key=len)
    assert len(longest) > 60  # the profile has a line wider than the console
    assert " ".join(longest.split()) in words
