"""The `vdeploy download` command: --json is JSON only on stdout, errors keep the documented exit codes."""

from __future__ import annotations

import json

from download_testlib import MODEL_ID
from typer.testing import CliRunner

from vdeploy.cli.main import app
from vdeploy.download.types import SCHEMA_VERSION
from vdeploy.errors import VdeployError


def _invoke(*args: str):
    return CliRunner().invoke(app, ["download", *args])


def test_json_summary_schema(hub, checkpoint_files, tmp_path):
    out = _invoke(MODEL_ID, "--source", "modelscope", "--endpoint", hub.url, "--local-dir", str(tmp_path / "d"),
                  "--workers", "2", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)  # nothing but JSON on stdout
    assert data["schema_version"] == SCHEMA_VERSION and data["ok"] is True and data["mode"] == "download"
    assert data["source"] == "modelscope" and data["model_id"] == MODEL_ID and data["revision"] == "master"
    assert data["bytes_total"] == data["bytes_downloaded"] == sum(len(v) for v in checkpoint_files.values())
    assert {f["path"] for f in data["files"]} == set(checkpoint_files)
    assert set(data["files"][0]) == {"path", "size", "status", "sha256", "verified_against", "message"}
    assert data["checkpoint"] == {"ran": True, "reason": None, "errors": [], "warnings": data["checkpoint"]["warnings"]}


def test_human_summary_and_source_from_environment(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("VDEPLOY_SOURCE", "huggingface")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    out = _invoke(MODEL_ID, "--local-dir", str(tmp_path / "d"), "--quiet")
    assert out.exit_code == 0, out.output
    assert out.stdout == ""  # --quiet prints nothing when all is well
    out = _invoke(MODEL_ID, "--local-dir", str(tmp_path / "d"), "--include", "*.json")
    assert out.exit_code == 0
    assert "huggingface @ main" in out.stdout and "skipped" in out.stdout


def test_unknown_model_in_json_mode(hub, tmp_path):
    out = _invoke("deepseek-ai/Nope", "--source", "huggingface", "--endpoint", hub.url, "--json",
                  "--local-dir", str(tmp_path / "d"))
    assert out.exit_code == 2
    data = json.loads(out.stdout)
    assert data["ok"] is False and "not found" in data["error"] and data["hint"]


def test_usage_errors_raise_known_errors():
    out = _invoke()
    assert isinstance(out.exception, VdeployError) and "missing MODEL_ID" in out.exception.message
    out = _invoke(MODEL_ID, "--verify", ".")
    assert isinstance(out.exception, VdeployError) and out.exception.exit_code == 2
    out = _invoke(MODEL_ID, "--source", "huggingface", "--link")
    assert isinstance(out.exception, VdeployError) and "--link" in out.exception.message
