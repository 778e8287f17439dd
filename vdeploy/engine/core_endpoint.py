"""The other end of a ProcessAsyncEngine's channel: an engine-core process it started on this host (LocalCore), or
a data-parallel replica's engine-core process on another node, reached over an authenticated TCP connection
(RemoteCore). Both carry the same length-prefixed frames (vdeploy/engine/core_codec.py); only how the core is
started, watched and described differs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Optional

from vdeploy.engine import core_codec as wire


def describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "closed its channel"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class LocalCore:
    """`python -m vdeploy.engine.core_process` as a child, over a Unix socketpair: nothing listens anywhere."""

    where_logs = "its log is above"

    def __init__(self, env: Optional[dict[str, str]] = None):
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # a fresh interpreter (not fork: the server may hold threads and locks), inheriting only the socket
            self._proc = subprocess.Popen([sys.executable, "-m", "vdeploy.engine.core_process", "--fd",
                                           str(child.fileno())], pass_fds=(child.fileno(),),
                                          env={**os.environ, **env} if env else None)
        finally:
            child.close()
        self._reader = self.sock.makefile("rb")

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid

    @property
    def label(self) -> str:
        return f"the engine process (pid {self._proc.pid})"

    def alive(self) -> bool:
        return self._proc.poll() is None

    def read_frame(self) -> Optional[bytes]:
        return wire.read_frame(self._reader)

    def wait_exit(self, timeout: float) -> Optional[str]:
        """How the process ended, waiting up to `timeout` s; None while it still runs."""
        try:
            return describe_exit(self._proc.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def state(self) -> str:
        """The process's run state in words (vdeploy.env.procfs.process_state)."""
        from vdeploy.env.procfs import process_state

        return process_state(self._proc.pid)

    def dump_stacks(self) -> None:
        """Ask the core to print every thread's Python stack to its stderr (the server's log): faulthandler, which
        core_process registers on SIGUSR1, writes them from the signal handler even while a thread is stuck in C."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGUSR1)

    def kill(self, reason: str = "") -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class ReplicaAddress:
    """Where a replica of another node listens, as its worker host announces it in the rendezvous store."""

    node_rank: int
    host: str
    port: int


class RemoteCore:
    """An engine-core process of another node. Its liveness is the connection: a killed process or a dead node
    closes it (or node 0's heartbeat watch cuts it, see DataParallelEngine), and the reader names the replica."""

    where_logs = "its log is on that node's `vdeploy worker-host`"

    def __init__(self, address: ReplicaAddress, key: bytes, connect_timeout_s: float = 30.0):
        from vdeploy.engine.dp_auth import prove_node0

        self.address = address
        self.sock = socket.create_connection((address.host, address.port), timeout=connect_timeout_s)
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one small frame per step
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            prove_node0(self.sock, key)
        except BaseException:
            self.sock.close()
            raise
        self._reader = self.sock.makefile("rb")
        self._ended = threading.Event()
        self._cut_reason = ""

    @property
    def pid(self) -> Optional[int]:
        return None  # it lives on another node

    @property
    def label(self) -> str:
        return f"the engine process at {self.address.host}:{self.address.port}"

    def alive(self) -> bool:
        return not self._ended.is_set()

    def read_frame(self) -> Optional[bytes]:
        try:
            payload = wire.read_frame(self._reader)
        except BaseException:
            self._ended.set()
            raise
        if payload is None:
            self._ended.set()
        return payload

    def wait_exit(self, timeout: float) -> Optional[str]:
        if not self._ended.wait(timeout):
            return None
        if self._cut_reason:
            return f"was cut off: {self._cut_reason}"
        return "closed its connection (its process died, or its node or the network failed)"

    def state(self) -> str:
        return "unknown"  # another node's process: its worker host watches it

    def dump_stacks(self) -> None:
        pass

    def kill(self, reason: str = "") -> None:
        """Cut the connection: the reader sees its end at once (the remote core exits when its peer is gone)."""
        self._cut_reason = self._cut_reason or reason
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._ended.set()

    def close(self) -> None:
        self.sock.close()
