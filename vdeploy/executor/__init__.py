"""Executors run the model runner on every rank: in-process for one rank, one process per rank beyond that."""

from __future__ import annotations

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.executor.base import Executor, ExecutorError


def create_executor(engine_config: EngineConfig, model_config: ModelConfig) -> Executor:
    """UniProcExecutor for one rank, MultiProcExecutor (one process per rank, tp x pp ranks, possibly over several
    nodes) beyond."""
    parallel = engine_config.parallel
    if parallel.world_size == 1 and parallel.nnodes == 1:
        from vdeploy.executor.uniproc import UniProcExecutor

        return UniProcExecutor(engine_config, model_config)
    from vdeploy.executor.multiproc import MultiProcExecutor

    return MultiProcExecutor(engine_config, model_config)


__all__ = ["Executor", "ExecutorError", "create_executor"]
