"""Resume: a connection dropped mid-file, and a download process killed mid-file, continue where they stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from download_testlib import MODEL_ID, run_download, shard_names

CUT = 11 * 1024 * 1024  # bytes sent before the fault; the shards are ~12.6 MB


def _resumed_from(hub, shard) -> int:
    ranges = [r.range for r in hub.file_gets(shard) if r.range]
    assert ranges, f"{shard} was fetched again from the start: {hub.file_gets(shard)}"
    return int(ranges[-1].split("=")[1].split("-")[0])


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_dropped_connection_resumes_mid_file(large_hub, large_checkpoint_files, tmp_path, source):
    shard = shard_names(large_checkpoint_files)[0]
    large_hub.drop_after[shard] = CUT
    result = run_download(source, large_hub.url, tmp_path / "d")
    assert result.ok, result.to_dict()
    assert (tmp_path / "d" / shard).read_bytes() == large_checkpoint_files[shard]
    assert 0 < _resumed_from(large_hub, shard) <= CUT
    assert len(large_hub.file_gets(shard)) == 2


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_killed_process_resumes_on_next_run(large_hub, large_checkpoint_files, tmp_path, source):
    shard = shard_names(large_checkpoint_files)[0]
    large_hub.stall_after[shard] = CUT
    target = tmp_path / "d"
    cmd = [sys.executable, "-m", "vdeploy", "download", MODEL_ID, "--source", source, "--endpoint", large_hub.url,
           "--local-dir", str(target), "--quiet", "--workers", "1"]
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert large_hub.stalled.wait(timeout=60), proc.stderr.read() if proc.poll() is not None else "no stall"
        time.sleep(0.5)  # let the client write what it received
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    del large_hub.stall_after[shard]
    large_hub.release.set()
    assert not (target / shard).exists()  # nothing half-written looks complete

    result = run_download(source, large_hub.url, target)
    assert result.ok, result.to_dict()
    assert (target / shard).read_bytes() == large_checkpoint_files[shard]
    assert _resumed_from(large_hub, shard) > 0
    assert not list(target.rglob("*.vdeploy-partial")) and not list(target.rglob("*.incomplete"))


def test_ctrl_c_stops_promptly_and_the_next_run_resumes(large_hub, large_checkpoint_files, tmp_path):
    import _thread
    import threading

    shard = shard_names(large_checkpoint_files)[0]
    large_hub.stall_after[shard] = CUT
    target = tmp_path / "d"

    def press_ctrl_c() -> None:
        large_hub.stalled.wait(timeout=30)
        time.sleep(0.3)
        _thread.interrupt_main()
        del large_hub.stall_after[shard]
        large_hub.release.set()  # the stalled response ends; the transfer notices the cancellation

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_download("huggingface", large_hub.url, target, workers=1)
    assert time.monotonic() - started < 20
    partials = list(target.glob(shard + ".*.vdeploy-partial"))
    assert len(partials) == 1 and partials[0].stat().st_size > 0
    assert not (target / shard).exists()

    result = run_download("huggingface", large_hub.url, target)
    assert result.ok and (target / shard).read_bytes() == large_checkpoint_files[shard]
    assert _resumed_from(large_hub, shard) > 0


def test_partial_file_of_another_revision_is_not_continued(hub, checkpoint_files, tmp_path):
    from vdeploy.download.hf_source import partial_path
    from vdeploy.download.types import RemoteFile

    shard = shard_names(checkpoint_files)[0]
    target = tmp_path / "d"
    target.mkdir()
    old = partial_path(target, RemoteFile(shard, 10, "sha256", "0" * 64))
    old.write_bytes(b"old revision bytes")
    neighbour = target / f"{shard}.extra.vdeploy-partial"  # not a revision tag: left alone
    neighbour.write_bytes(b"x")
    result = run_download("huggingface", hub.url, target)
    assert result.ok and not old.exists() and neighbour.exists()
    assert all(r.range is None for r in hub.file_gets(shard))
