"""The YAML profiles ship inside the wheel: a non-editable install finds them through the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contains_profiles_and_installed_copy_loads_them(tmp_path):
    # the wheel is built offline with the environment's own build backend (pyproject.toml: setuptools)
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this environment")
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("vdeploy", "kernels", "profiles"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("vdeploy-*.whl"))
    shipped = {Path(n).name for n in zipfile.ZipFile(wheel).namelist() if n.startswith("vdeploy/profiles_data/")}
    expected = {p.name for p in (REPO / "profiles").glob("*.yaml")}
    assert expected and expected <= shipped

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import vdeploy, vdeploy.profiles as p; profiles = p.load_profiles(env={}); "
            "print(vdeploy.__file__); print(len(profiles)); print(profiles[0].source)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    module_file, count, source = done.stdout.split("\n")[:3]
    assert module_file.startswith(str(site))  # the installed copy, not the source tree
    assert int(count) == len(expected)
    assert source.startswith(str(site / "vdeploy" / "profiles_data"))
