"""`vdeploy ls` reads the model cache while a `vdeploy pull` may be writing to it in another terminal: partial files
are renamed into place and deleted under its feet, which must not end the listing with a traceback."""

from __future__ import annotations

import os
import threading
import time


def test_listing_survives_files_renamed_and_deleted_meanwhile(tmp_path):
    from vdeploy.cli.local_models import cached_models

    model = tmp_path / "vdeploy-home" / "models" / "org" / "name"  # VDEPLOY_HOME is set by conftest
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    (model / "weights.bin").write_bytes(b"w" * 1000)
    stop = threading.Event()

    def download_in_progress() -> None:  # as a transfer does: partial file, rename into place, replaced again
        i = 0
        while not stop.is_set():
            nested = model / f"sub{i % 7}"
            nested.mkdir(exist_ok=True)
            partial = nested / f"shard{i % 50}.vdeploy-partial"
            partial.write_bytes(b"x")
            os.replace(partial, nested / f"shard{i % 50}")
            (nested / f"shard{i % 50}").unlink()
            if i % 7 == 0:
                nested.rmdir()
            i += 1

    writer = threading.Thread(target=download_in_progress, daemon=True)
    writer.start()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            (listed,) = cached_models()
            assert listed.name == "org/name" and listed.size_bytes >= 1000 and listed.quantization == "bfloat16"
    finally:
        stop.set()
        writer.join(timeout=5)
