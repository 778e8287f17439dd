"""The MLA latent norms (q_a_layernorm, kv_a_layernorm) use eps 1e-6 whatever rms_norm_eps says, as DeepSeek's own
modeling code and transformers build them; a checkpoint of the DeepseekV3 architecture with another rms_norm_eps
(Moonlight: 1e-5) gave other logits when they took the config's."""

import pytest
import torch

from tests.deepseek.deepseek_fixtures import PagedRunner, load_ours, save_hf_model, tiny_v2_config, tiny_v3_config
from tests.deepseek.test_deepseek_vs_hf import PROMPTS, hf_greedy, ours_greedy


@pytest.mark.parametrize("family", ["v3", "v2"])
def test_latent_norms_keep_their_own_eps(tmp_path, family):
    # an eps large against the latents' mean square makes the difference plain in the logits
    config = (tiny_v3_config if family == "v3" else tiny_v2_config)(rms_norm_eps=0.05, max_position_embeddings=256)
    hf = save_hf_model(config, tmp_path)
    ours, cfg = load_ours(tmp_path)
    logits = PagedRunner(ours, cfg).step([(0, PROMPTS[0], 0)])
    with torch.no_grad():
        ref = hf(torch.tensor([PROMPTS[0]])).logits[0, -1]
    torch.testing.assert_close(logits[0], ref, rtol=1e-3, atol=1e-3)
    assert ours_greedy(PagedRunner(ours, cfg), 0, PROMPTS[0], 8) == hf_greedy(hf, PROMPTS[0], 8)
