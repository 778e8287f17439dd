"""The engine-core process of `vdeploy serve`: owns the EngineCore and runs the step loop, with its own interpreter
(the HTTP server's event loop and per-token SSE work no longer share a GIL with scheduling, the forward pass and
detokenizing).

Started by `ProcessAsyncEngine` as `python -m vdeploy.engine.core_process --fd N`, where N is this end of a Unix
socketpair: nothing listens on a port or a path, so no other peer can reach the channel. A reader thread turns
frames into commands; the main thread applies them between steps, steps, and sends one StepOutputs per step.

A data-parallel replica on a node other than node 0 runs as `--listen-fd N --model PATH`: N is a TCP socket its
`vdeploy worker-host` bound on the address the operator chose. It accepts node 0's connection only after the HMAC
handshake (vdeploy/engine/dp_auth.py; the secret comes in VDEPLOY_DP_SECRET, never on the command line), keeps
refusing other peers until then, and runs node 0's configuration on this node's checkpoint copy.

The process exits when told to (Shutdown), when the server end of the socket closes (the server died: no orphan),
or after a failed step (it reports Failed first). It ignores SIGINT and SIGTERM: Ctrl-C in a terminal and
systemd's stop reach the whole process group, and the server must be able to drain its in-flight requests through
this process before stopping it. SIGUSR1 prints every thread's stack to stderr (the server's watchdog sends it
before it kills a core that made no progress for --step-timeout).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import socket
import sys
import threading
from typing import Any

from vdeploy.engine import core_codec as wire
from vdeploy.engine.outputs import OutputKind

_IDLE_WAIT_S = 0.5  # how long the idle loop sleeps before re-checking for shutdown
# a remote replica's exit code when node 0's connection ended without a Shutdown (node 0 died, or cut us off): its
# worker host tells this apart from the clean end of the job
NODE0_GONE = 3


class _Inbox:
    """Commands from the server, filled by the reader thread, drained by the step loop between steps."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.commands: list[Any] = []
        self.wakeup = threading.Event()
        self.closed = False  # Shutdown received, or the server end is gone
        self.told_to_stop = False  # Shutdown received

    def put(self, message: Any) -> None:
        with self.lock:
            self.commands.append(message)
        self.wakeup.set()

    def take(self) -> list[Any]:
        with self.lock:
            commands, self.commands = self.commands, []
        return commands

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()


class CoreProcess:
    def __init__(self, sock: socket.socket, local_overrides: dict[str, Any] | None = None):
        self.sock = sock
        self.local_overrides = local_overrides or {}  # a remote replica: this node's model path and device
        self.reader = sock.makefile("rb")
        self.codec = wire.core_side_codec()
        self.inbox = _Inbox()
        self.encoder = wire.OutputEncoder()
        self.ready = False
        self.num_adds_applied = 0
        self.errors: list[wire.RequestError] = []
        self.core: Any = None

    # ---- channel ------------------------------------------------------------------------------------------------
    def send(self, message: Any) -> None:
        self.sock.sendall(self.codec.encode(message))

    def receive(self) -> Any:
        payload = wire.read_frame(self.reader)
        return None if payload is None else self.codec.decode(payload)

    def _read_loop(self) -> None:
        while True:
            try:
                message = self.receive()
            except wire.FramingError as e:  # the stream cannot be resynchronised: treat it as the server gone
                print(f"vdeploy engine core: {e}", file=sys.stderr, flush=True)
                message = None
            except wire.ProtocolError as e:  # a frame we cannot decode is dropped, never interpreted
                print(f"vdeploy engine core: {e}", file=sys.stderr, flush=True)
                continue
            except OSError:
                message = None
            if message is None or isinstance(message, wire.Shutdown):
                if not self.ready and message is None:
                    os._exit(1)  # the server went away while the model loads: nobody will ever ask for a step
                self.inbox.told_to_stop = message is not None
                self.inbox.close()
                return
            if isinstance(message, (wire.AddRequest, wire.AbortRequests, wire.LoRACommand)):
                self.inbox.put(message)

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            init = self.receive()
        except wire.ProtocolError as e:
            print(f"vdeploy engine core: {e}", file=sys.stderr, flush=True)
            return 2
        if not isinstance(init, wire.Init):
            return 2
        threading.Thread(target=self._read_loop, name="vdeploy-core-reader", daemon=True).start()
        try:
            from vdeploy.engine.engine_core import EngineCore

            config = init.config
            if self.local_overrides:
                from dataclasses import replace

                config = replace(config, **self.local_overrides)
            self.core = EngineCore(config)
        except BaseException as e:  # noqa: BLE001 - the server names the failure, then this process exits
            self._report_failure(e, during_startup=True)
            return 1
        core = self.core
        self.ready = True
        self.send(wire.Ready(core.max_model_len, dict(core.generation_defaults), core.stats(),
                             list(core.eos_token_ids)))
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - every failure must reach the waiting clients
            self._report_failure(e, during_startup=False)
            core.shutdown()
            return 1
        core.shutdown()
        return 0

    def _report_failure(self, e: BaseException, *, during_startup: bool) -> None:
        import traceback

        from vdeploy.errors import VdeployError

        if isinstance(e, VdeployError) and os.environ.get("VDEPLOY_DEBUG") != "1":  # known: one line, no traceback
            hint = f" ({e.hint})" if e.hint else ""
            print(f"vdeploy engine core: error: {e.message}{hint}", file=sys.stderr, flush=True)
        else:
            traceback.print_exc(file=sys.stderr)
        try:
            self.send(wire.Failed(type(e).__name__, str(getattr(e, "message", e)), getattr(e, "hint", None),
                                  during_startup))
        except OSError:
            pass  # the server is gone too

    def _loop(self) -> None:
        core, inbox = self.core, self.inbox
        while not inbox.closed:
            self._apply(inbox.take())
            if not core.has_unfinished_requests():
                if self.errors:
                    self._send_outputs([])
                core.check_idle()
                inbox.wakeup.wait(_IDLE_WAIT_S)
                inbox.wakeup.clear()
                continue
            self._send_outputs(core.step())

    def _apply(self, commands: list[Any]) -> None:
        from vdeploy.errors import ConfigError, VdeployError

        for command in commands:
            if isinstance(command, wire.AddRequest):
                self.num_adds_applied += command.params.n
                try:
                    # deltas: the server rebuilds the answer, so no step copies it here however long it grows
                    self.core.add_request(command.request_id, command.prompt_token_ids, command.params,
                                          output_kind=OutputKind.DELTA, lora_name=command.lora_name,
                                          cache_salt=command.cache_salt)
                except VdeployError as e:  # e.g. QueueFull under a race: that request fails, the engine goes on
                    self.errors.append(wire.RequestError(command.request_id, type(e).__name__, e.message, e.hint))
            elif isinstance(command, wire.LoRACommand):
                result = wire.LoRAResult(command.call_id)
                try:
                    if command.path is None:
                        self.core.remove_lora(command.name)
                    else:
                        self.core.add_lora(command.name, command.path)
                except ConfigError as e:  # a bad adapter is refused; the engine goes on (a rank failure does not)
                    result = wire.LoRAResult(command.call_id, type(e).__name__, e.message, e.hint)
                self.send(result)
            else:
                self.core.abort_request(command.request_ids)

    def _send_outputs(self, outputs: list[Any]) -> None:
        errors, self.errors = self.errors, []
        encoded = [self.encoder.encode(out) for out in outputs]
        self.send(wire.StepOutputs(encoded, errors, self.core.stats(), self.num_adds_applied))


def accept_node0(listener: socket.socket, key: bytes) -> socket.socket:
    """The first peer that proves it knows the secret; every other is named on stderr and dropped. The listener
    closes once node 0 is in: a replica serves one front-end."""
    from vdeploy.engine.dp_auth import AuthenticationError, challenge_node0

    while True:
        conn, peer = listener.accept()
        try:
            challenge_node0(conn, key)
        except AuthenticationError as e:
            print(f"vdeploy engine core: refused {peer[0]}:{peer[1]}: {e}", file=sys.stderr, flush=True)
            conn.close()
            continue
        listener.close()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return conn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="vdeploy engine-core process (started by vdeploy serve)")
    channel = parser.add_mutually_exclusive_group(required=True)
    channel.add_argument("--fd", type=int, help="this end of the server's socketpair")
    channel.add_argument("--listen-fd", type=int, help="a listening TCP socket (a replica of a worker host)")
    parser.add_argument("--model", help="with --listen-fd: this node's copy of the checkpoint")
    parser.add_argument("--device", help="with --listen-fd: this node's device choice (default: node 0's)")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    # the server's step watchdog asks for every thread's stack before it stops a core that made no progress
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    overrides: dict[str, Any] = {}
    if args.listen_fd is not None:
        from vdeploy.engine.dp_auth import secret_key

        key = secret_key(os.environ.get("VDEPLOY_DP_SECRET"), where="VDEPLOY_DP_SECRET of the replica process")
        sock = accept_node0(socket.socket(fileno=args.listen_fd), key)
        overrides = {"model": args.model, "tokenizer": None, **({"device": args.device} if args.device else {})}
    else:
        sock = socket.socket(fileno=args.fd)
        if sock.family != socket.AF_UNIX:
            print("vdeploy engine core: --fd must be a Unix socket", file=sys.stderr)
            return 2
    try:
        process = CoreProcess(sock, overrides)
        code = process.run()
        if code == 0 and args.listen_fd is not None and not process.inbox.told_to_stop:
            return NODE0_GONE
        return code
    except OSError as e:  # the server end closed while we were sending: it is gone, and so are its clients
        print(f"vdeploy engine core: channel closed ({e})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
