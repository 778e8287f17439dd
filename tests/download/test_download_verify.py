"""Corruption is detected, named, exits non-zero and never left looking like a finished file; --verify re-checks."""

from __future__ import annotations

import json

import pytest
from download_testlib import MODEL_ID, run_download, shard_names
from typer.testing import CliRunner

from vdeploy.cli.main import app
from vdeploy.download import verify_directory
from vdeploy.download.manifest import MANIFEST_NAME


@pytest.fixture
def fast_modelscope_retries(monkeypatch):
    """The ModelScope client retries a hash mismatch with 1 s, 2 s back-off; the test needs no waiting."""
    import modelscope_hub._download as ms_download

    monkeypatch.setattr(ms_download, "DOWNLOAD_INTEGRITY_RETRY_BACKOFF", 0.0)


def test_huggingface_corrupt_file_detected_by_our_sha256(hub, checkpoint_files, tmp_path):
    shard = shard_names(checkpoint_files)[0]
    hub.corrupt.add(shard)  # huggingface_hub itself only checks the size, which is right
    target = tmp_path / "d"
    runner = CliRunner()
    out = runner.invoke(app, ["download", MODEL_ID, "--source", "huggingface", "--endpoint", hub.url,
                              "--local-dir", str(target), "--json"])
    assert out.exit_code == 1, out.output
    summary = json.loads(out.stdout)
    bad = [f for f in summary["files"] if f["status"] != "downloaded"]
    assert [(f["path"], f["status"]) for f in bad] == [(shard, "corrupt")]
    assert "sha256" in bad[0]["message"] and not summary["ok"]
    assert not (target / shard).exists() and (target / (shard + ".corrupt")).exists()
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert not manifest["complete"] and shard not in manifest["files"]

    hub.corrupt.clear()  # the hub is fixed: the next run fetches only the bad shard
    hub.requests.clear()
    again = run_download("huggingface", hub.url, target)
    assert again.ok
    assert [f.path for f in again.files if f.status == "downloaded"] == [shard]


def test_modelscope_corrupt_file_rejected(hub, checkpoint_files, tmp_path, fast_modelscope_retries):
    shard = shard_names(checkpoint_files)[1]
    hub.corrupt.add(shard)
    result = run_download("modelscope", hub.url, tmp_path / "d")
    assert not result.ok
    bad = [f for f in result.files if f.status == "corrupt"]
    assert [f.path for f in bad] == [shard] and shard in bad[0].message
    assert not (tmp_path / "d" / shard).exists()


def test_verify_detects_tampering_and_next_download_repairs(hub, checkpoint_files, tmp_path):
    target = tmp_path / "d"
    assert run_download("huggingface", hub.url, target).ok
    clean = verify_directory(target)
    assert clean.ok and {f.status for f in clean.files} == {"verified"} and clean.checkpoint.ran

    shard = shard_names(checkpoint_files)[1]
    data = bytearray((target / shard).read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the tensor data: headers still parse
    (target / shard).write_bytes(bytes(data))
    hub.requests.clear()
    out = CliRunner().invoke(app, ["download", "--verify", str(target), "--json"])
    assert out.exit_code == 1
    summary = json.loads(out.stdout)
    assert [(f["path"], f["status"]) for f in summary["files"] if f["status"] != "verified"] == [(shard, "corrupt")]
    assert not hub.requests  # --verify never touches the network
    assert (target / (shard + ".corrupt")).exists() and not (target / shard).exists()

    repaired = run_download("huggingface", hub.url, target)
    assert repaired.ok and [f.path for f in repaired.files if f.status == "downloaded"] == [shard]


def test_verify_without_manifest_runs_checkpoint_checks_only(tmp_path, checkpoint_files):
    for name, data in checkpoint_files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    result = verify_directory(tmp_path)
    assert result.files == [] and result.checkpoint.ran and result.ok


def test_a_failing_file_is_named_and_the_rest_completes(hub, checkpoint_files, tmp_path):
    shard = shard_names(checkpoint_files)[0]
    hub.broken.add(shard)
    target = tmp_path / "d"
    result = run_download("huggingface", hub.url, target)
    assert not result.ok and not result.checkpoint.ran
    failed = [f for f in result.files if f.status == "failed"]
    assert [f.path for f in failed] == [shard] and shard in failed[0].message
    assert all((target / n).exists() for n in checkpoint_files if n != shard)
    assert not (target / shard).exists()

    hub.broken.clear()
    hub.requests.clear()
    again = run_download("huggingface", hub.url, target)
    assert again.ok and [f.path for f in again.files if f.status == "downloaded"] == [shard]
