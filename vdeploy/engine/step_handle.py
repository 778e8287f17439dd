"""What `Executor.execute_async` returns: a step that was launched and whose tokens come back later."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vdeploy.engine.outputs import ModelRunnerOutput


class StepHandle(Protocol):
    def result(self) -> ModelRunnerOutput:
        """Block until the step's sampled tokens are on the host. Called once, in launch order."""


@dataclass
class CompletedStep:
    """A step that already ran to the end (synchronous executors, empty steps)."""

    output: ModelRunnerOutput

    def result(self) -> ModelRunnerOutput:
        return self.output
