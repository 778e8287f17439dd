"""A rank whose engine goes away while the rank is still starting (Ctrl-C or SIGTERM during `vdeploy serve`'s load)
exits at once instead of waiting for its peers up to the 10-minute rendezvous timeout (it used to linger, with the
forkserver, long after the command had returned)."""

from __future__ import annotations

import time

import pytest
from worker_checkpoints import engine_config, model_config, save_tiny_checkpoint

from vdeploy.distributed.rendezvous import RendezvousSpec, host_store
from vdeploy.executor.multiproc import rank_process_context
from vdeploy.executor.rank_process import RankLaunch, run_rank


@pytest.mark.timeout(90)
def test_a_starting_rank_exits_when_the_executor_pipe_closes(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "ckpt", "llama")
    store = host_store("127.0.0.1", None, 2)  # world size 2, and rank 1 never comes: rank 0 blocks in rendezvous
    spec = RendezvousSpec("127.0.0.1", store.port, 2, "gloo")
    launch = RankLaunch(0, 0, 1, spec, engine_config(path, tp=2), model_config(path))
    ctx = rank_process_context("cpu")
    parent_end, child_end = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=run_rank, args=(launch, child_end), daemon=True)
    proc.start()
    child_end.close()
    try:
        deadline = time.monotonic() + 60
        while store.num_keys() == 0 and time.monotonic() < deadline:  # until the rank registered in the store
            time.sleep(0.1)
        assert store.num_keys() > 0, "the rank never reached the rendezvous"
        time.sleep(0.5)
        assert proc.is_alive(), "the rank should still be waiting for rank 1"
        parent_end.close()  # the engine is gone
        proc.join(timeout=10)
        assert proc.exitcode == 0, "a starting rank outlived its executor"
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
