"""max_model_len may not exceed the model's max_position_embeddings: positions past it have no rotary entry, and
the first long request used to crash a rank (and the server with it)."""

import pytest
from engine_fake_executor import TINY_LLAMA as MODEL
from engine_fake_executor import PagedTokenExecutor

from vdeploy.config import EngineConfig, SchedulerConfig
from vdeploy.engine.engine_core import EngineCore
from vdeploy.errors import ConfigError


class RecordingExecutor(PagedTokenExecutor):
    """Counts KV-cache setup calls, to show the refusal comes before anything is set up."""

    def __init__(self):
        super().__init__(4, 256)
        self.setup_calls = 0

    def determine_num_kv_blocks(self) -> int:
        self.setup_calls += 1
        return super().determine_num_kv_blocks()


def test_max_model_len_above_the_models_context_is_refused_before_setup(tmp_path):
    executor = RecordingExecutor()
    cfg = EngineConfig(model=str(tmp_path), scheduler=SchedulerConfig(max_model_len=MODEL.max_position_embeddings + 1))
    with pytest.raises(ConfigError, match="max_position_embeddings=128") as info:
        EngineCore(cfg, model_config=MODEL, executor=executor)
    assert "--max-model-len 128" in info.value.hint
    assert executor.setup_calls == 0


def test_max_model_len_equal_to_the_models_context_is_kept(tmp_path):
    cfg = EngineConfig(model=str(tmp_path), scheduler=SchedulerConfig(max_model_len=MODEL.max_position_embeddings))
    engine = EngineCore(cfg, model_config=MODEL, executor=PagedTokenExecutor(4, 256))
    assert engine.max_model_len == 128
