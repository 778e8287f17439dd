"""DeepSeek-V2/V3 with tie_word_embeddings: HF ties the LM head to the embedding and saves no lm_head.weight; we
must use the embedding as the head too (same weights -> same logits and greedy tokens)."""

import pytest
import torch

from tests.deepseek.deepseek_fixtures import PagedRunner, load_ours, save_hf_model, tiny_v2_config, tiny_v3_config
from tests.deepseek.test_deepseek_vs_hf import PROMPTS, hf_greedy, ours_greedy


@pytest.mark.parametrize("family", ["v3", "v2"])
def test_tied_head_matches_hf(tmp_path, family):
    config = (tiny_v3_config if family == "v3" else tiny_v2_config)(tie_word_embeddings=True,
                                                                    max_position_embeddings=256)
    hf = save_hf_model(config, tmp_path)
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()  # HF really ties them
    ours, cfg = load_ours(tmp_path)
    assert cfg.tie_word_embeddings and ours.lm_head is ours.model.embed_tokens
    logits = PagedRunner(ours, cfg).step([(0, PROMPTS[0], 0)])
    with torch.no_grad():
        ref = hf(torch.tensor([PROMPTS[0]])).logits[0, -1]
    torch.testing.assert_close(logits[0], ref, rtol=1e-3, atol=1e-3)
    assert ours_greedy(PagedRunner(ours, cfg), 0, PROMPTS[0], 8) == hf_greedy(hf, PROMPTS[0], 8)


def test_tied_head_on_a_last_pipeline_stage_loads_the_embedding(tmp_path):
    """The last of two stages has no embedding: its head loads model.embed_tokens.weight itself."""
    from vdeploy.config import EngineConfig
    from vdeploy.distributed import ParallelState
    from vdeploy.models.loader import load_model

    hf = save_hf_model(tiny_v3_config(tie_word_embeddings=True, max_position_embeddings=256), tmp_path)
    _, cfg = load_ours(tmp_path)
    last = load_model(EngineConfig(model=str(tmp_path)), cfg, ParallelState(pp_rank=1, pp_size=2), "cpu",
                      torch.float32, quiet=True)
    assert last.head_loads_embedding
    torch.testing.assert_close(last.lm_head.weight, hf.model.embed_tokens.weight, rtol=0, atol=0)
