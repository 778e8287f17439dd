"""The interface the engine drives, whatever the number of ranks or processes behind it."""

from __future__ import annotations

from abc import ABC, abstractmethod

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.engine.kv_cache_spec import KVCacheSpec
from vdeploy.engine.outputs import ModelRunnerOutput, SchedulerOutput
from vdeploy.errors import EXIT_CHECK_FAILED, VdeployError
from vdeploy.engine.step_handle import CompletedStep, StepHandle
from vdeploy.worker.model_runner import kv_cache_spec_for


class ExecutorError(VdeployError):
    """A rank failed or died; the executor has shut every rank down."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, message: str, hint: str | None = None, remote_traceback: str | None = None):
        super().__init__(message, hint=hint)
        self.remote_traceback = remote_traceback


class Executor(ABC):
    """Lifecycle: create -> determine_num_kv_blocks -> initialize_kv_cache -> execute* -> shutdown."""

    def __init__(self, engine_config: EngineConfig, model_config: ModelConfig):
        self.engine_config = engine_config
        self.model_config = model_config
        self.kv_cache_spec: KVCacheSpec = kv_cache_spec_for(engine_config, model_config)  # one rank's layout

    @abstractmethod
    def determine_num_kv_blocks(self) -> int:
        """KV blocks every rank can hold (the minimum over ranks)."""

    @abstractmethod
    def initialize_kv_cache(self, num_blocks: int) -> None:
        """Allocate num_blocks KV blocks per layer on every rank, then capture decode CUDA graphs (unless eager)."""

    @abstractmethod
    def execute(self, scheduler_output: SchedulerOutput) -> ModelRunnerOutput:
        """Run one step on every rank; returns the sampled tokens of the driver (the last stage's tensor rank 0)."""

    def execute_async(self, scheduler_output: SchedulerOutput) -> StepHandle:
        """Launch one step and return before its tokens are back, so the engine can schedule the next step
        meanwhile. Its `PLACEHOLDER_TOKEN_ID`s stand for the tokens the previous step samples. Handles are
        resolved in launch order."""
        return CompletedStep(self.execute(scheduler_output))

    def load_lora(self, slot: int, adapter) -> None:
        """Write a checked LoRA adapter into `slot` on every rank (no step may be in flight)."""
        raise NotImplementedError(f"{type(self).__name__} cannot load LoRA adapters")

    def check_idle(self) -> None:
        """Called by the engine's loop while no step is in flight: raise ExecutorError when a rank died or is stuck
        (a single in-process rank cannot be)."""

    @abstractmethod
    def shutdown(self) -> None:
        """Release every rank. Idempotent."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
