"""One rank, in the engine's own process: no process group, no IPC."""

from __future__ import annotations

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.engine.outputs import ModelRunnerOutput, SchedulerOutput
from vdeploy.executor.base import Executor
from vdeploy.engine.step_handle import StepHandle
from vdeploy.worker.device import resolve_device
from vdeploy.worker.model_runner import ModelRunner


class UniProcExecutor(Executor):
    def __init__(self, engine_config: EngineConfig, model_config: ModelConfig):
        super().__init__(engine_config, model_config)
        device = resolve_device(engine_config, local_rank=0)
        self.runner = ModelRunner(engine_config, model_config, ParallelState(), device)
        self.runner.load_model()

    def determine_num_kv_blocks(self) -> int:
        return self.runner.determine_num_kv_blocks()

    def initialize_kv_cache(self, num_blocks: int) -> None:
        self.runner.initialize_kv_cache(num_blocks)

    def execute(self, scheduler_output: SchedulerOutput) -> ModelRunnerOutput:
        return self.runner.execute(scheduler_output)

    def execute_async(self, scheduler_output: SchedulerOutput) -> StepHandle:
        return self.runner.execute_async(scheduler_output)

    def load_lora(self, slot: int, adapter) -> None:
        self.runner.load_lora(slot, adapter)

    def shutdown(self) -> None:
        self.runner.shutdown()
