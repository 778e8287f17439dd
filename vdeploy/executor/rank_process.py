"""The body of one spawned rank process: join the process group, load this rank's slice of the model, then serve
RankCalls until told to shut down or the executor goes away: from its own control pipe on one node, through rank
0's broadcast across nodes (control_relay)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.rendezvous import RendezvousSpec
from vdeploy.executor.control import (
    EXECUTE,
    RANK_METHODS,
    SHUTDOWN,
    RankCall,
    RankReply,
    decode,
    encode,
    user_error_info,
)


@dataclass(frozen=True)
class RankLaunch:
    rank: int
    local_rank: int
    local_world_size: int
    rendezvous: RendezvousSpec
    engine_config: EngineConfig
    model_config: ModelConfig
    relay: bool = False  # multi-node: calls reach every rank through rank 0's broadcast (control_relay)


def run_rank(launch: RankLaunch, conn) -> None:
    """Process entry point (spawned). Exits 0 after a shutdown call or when the executor's end of the pipe closes,
    1 after reporting an exception."""
    # Ctrl-C reaches the whole process group; the executor, not each rank, decides how to shut down
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runner = None
    started = _exit_if_executor_leaves_during_startup(conn)
    try:
        runner, relay = _start(launch, conn)
        started.set()
        conn.send_bytes(encode(RankReply(rank=launch.rank, ok=True)))
        if relay is None:
            _serve(launch.rank, runner, conn)
        else:
            _serve_relayed(relay, runner, conn)
    except EOFError:
        # The executor is gone (killed?): exit now. A process-group teardown would talk to the rendezvous store
        # that died with it and could block for its whole timeout.
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - every failure must reach the executor
        _report(conn, launch.rank, e)
        conn.close()
        os._exit(1)  # skip process-group teardown: peers may be stuck in a collective with us
    _stop(runner)
    # Everything this rank owns is released; skipping the interpreter's teardown of torch's modules saves
    # about a second per rank (more when ranks share few cores), which every engine shutdown would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _exit_if_executor_leaves_during_startup(conn) -> threading.Event:
    """Exit when the executor's end of the pipe closes before this rank is ready; set the returned event once it is.

    Startup (rendezvous, weight loading) reads nothing from the pipe, so without this a rank whose engine was
    killed or interrupted meanwhile (Ctrl-C or SIGTERM while `vdeploy serve` loads, or a rank the forkserver forked
    after the engine gave up on it) waited for peers that never come, up to the rendezvous timeout of 10 minutes.
    The executor writes nothing before every rank reported ready, so a readable pipe before then means EOF."""
    started = threading.Event()

    def watch() -> None:
        while not started.is_set():
            if wait([conn], timeout=0.5) and not started.is_set():
                os._exit(0)

    threading.Thread(target=watch, name="vdeploy-startup-watchdog", daemon=True).start()
    return started


def _start(launch: RankLaunch, conn):
    import torch

    from vdeploy.distributed.rendezvous import init_rank, new_control_group
    from vdeploy.worker.device import resolve_device
    from vdeploy.worker.model_runner import ModelRunner

    device = resolve_device(launch.engine_config, launch.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        # ranks share the host's cores: oversubscribed intra-op threads would slow every rank down
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // launch.local_world_size))
    parallel = init_rank(launch.rendezvous, launch.rank)
    relay = None
    if launch.relay:
        from vdeploy.executor.control_relay import ControlRelay

        driver = (parallel.pp_size - 1) * parallel.tp_size
        relay = ControlRelay(new_control_group(), launch.rank, driver)
        relay.start_watchdog(conn)
    runner = ModelRunner(launch.engine_config, launch.model_config, parallel, device)
    runner.load_model()
    return runner, relay


def _serve(rank: int, runner, conn) -> None:
    while True:
        call: RankCall = decode(conn.recv_bytes())
        if call.method == SHUTDOWN:
            return
        if call.method not in RANK_METHODS:
            raise ValueError(f"unknown rank method {call.method!r}")
        value = getattr(runner, call.method)(*call.args)
        if call.method != EXECUTE or runner.parallel.is_driver:
            conn.send_bytes(encode(RankReply(rank=rank, ok=True, value=value)))


def _serve_relayed(relay, runner, conn) -> None:
    while True:
        call: RankCall = relay.next_call(conn)
        if call.method == SHUTDOWN:
            return
        if call.method not in RANK_METHODS:
            raise ValueError(f"unknown rank method {call.method!r}")
        relay.answer(call, getattr(runner, call.method)(*call.args), conn)


def _report(conn, rank: int, error: BaseException) -> None:
    user_error = user_error_info(error)
    reply = RankReply(
        rank=rank,
        ok=False,
        error=f"{type(error).__name__}: {error}",
        traceback=traceback.format_exc(),
        user_error=user_error,
    )
    try:
        conn.send_bytes(encode(reply))
    except (OSError, ValueError):
        pass  # the executor is gone or the error does not pickle; the exit code still tells


def _stop(runner) -> None:
    from vdeploy.distributed.rendezvous import destroy_rank

    if runner is not None:
        runner.shutdown()
    destroy_rank()
