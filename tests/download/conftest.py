"""Fixtures for the download tests: an isolated environment, a tiny real sharded checkpoint, and our local hub."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # no __init__.py here: local_hub and download_testlib load by name

from download_testlib import MODEL_ID
from local_hub import LocalHub


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads the user's caches, tokens or source settings, or writes outside tmp_path."""
    for name in ("HF_ENDPOINT", "MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN", "VDEPLOY_SOURCE", "VLLM_USE_MODELSCOPE",
                 "HF_TOKEN", "MODELSCOPE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path / "vdeploy-home"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("MODELSCOPE_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return tmp_path


@pytest.fixture(scope="session")
def checkpoint_files(tmp_path_factory) -> dict[str, bytes]:
    """A 2-shard Llama checkpoint with real tensors (about 0.6 MB per shard) plus a nested non-weight file."""
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint

    root = write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), "llama", num_shards=2,
                                 config_overrides={"vocab_size": 4096})
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    files["docs/notes.md"] = b"# tiny model for vdeploy download tests\n"
    return files


@pytest.fixture
def hub(checkpoint_files):
    server = LocalHub()
    server.add_repo(MODEL_ID, checkpoint_files, tags=("v1.0",))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def large_checkpoint_files(tmp_path_factory) -> dict[str, bytes]:
    """Shards of ~12.6 MB: larger than huggingface_hub's 10 MB write chunk, so a transfer cut after 11 MB has left
    whole chunks on disk to resume from (as with real multi-GB shards)."""
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint

    root = write_tiny_checkpoint(tmp_path_factory.mktemp("large"), "llama", num_shards=2,
                                 config_overrides={"vocab_size": 98304})
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def large_hub(large_checkpoint_files):
    server = LocalHub()
    server.add_repo(MODEL_ID, large_checkpoint_files)
    server.start()
    yield server
    server.stop()

