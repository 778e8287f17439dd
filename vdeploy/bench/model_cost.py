"""What one token costs the loaded model (bytes, FLOP inputs): from its parameters when it runs in this process,
else from config arithmetic. Used by `vdeploy bench` and the benchmark suite alike."""

from __future__ import annotations

from typing import Any

from vdeploy.bench.roofline import ModelCost


def _loaded_model(llm: Any) -> Any | None:
    """The engine's torch model when it runs in this process (one rank), else None."""
    runner = getattr(getattr(llm.core, "executor", None), "runner", None)
    return getattr(runner, "model", None)


def cost_from_config(cfg: Any, dtype_bytes: int, kv_bytes_per_token: int) -> ModelCost:
    """ModelCost by config arithmetic (the checkpoint planner's parameter count), for when the model is not loaded
    in this process."""
    from vdeploy.checkpoint.planner import estimate_params

    total = estimate_params(cfg).total
    table = cfg.vocab_size * cfg.hidden_size
    moe_layers = sum(cfg.is_moe_layer(i) for i in range(cfg.num_layers)) if cfg.n_routed_experts else 0
    routed = moe_layers * cfg.n_routed_experts * 3 * cfg.hidden_size * cfg.moe_intermediate_size
    return ModelCost(param_bytes=total * dtype_bytes, num_params=total, embedding_params=table,
                     lm_head_params=0 if cfg.tie_word_embeddings else table, routed_expert_bytes=routed * dtype_bytes,
                     routed_expert_params=routed, **_shape_fields(cfg, kv_bytes_per_token))


def _shape_fields(cfg: Any, kv_bytes_per_token: int) -> dict[str, Any]:
    moe = cfg.n_routed_experts > 0
    return {"num_experts": cfg.n_routed_experts, "experts_per_token": cfg.num_experts_per_tok if moe else 0,
            "kv_bytes_per_token": kv_bytes_per_token, "num_layers": cfg.num_layers, "num_heads": cfg.num_heads,
            "head_dim": cfg.qk_head_dim if cfg.is_mla else cfg.head_dim,
            "v_head_dim": cfg.v_head_dim if cfg.is_mla else cfg.head_dim, "hidden_size": cfg.hidden_size,
            "tied_embeddings": cfg.tie_word_embeddings}


def model_cost(llm: Any) -> tuple[ModelCost, str]:
    """The model's cost figures and where the parameter count came from ("loaded model" or "config")."""
    from vdeploy.config import DTYPE_BYTES

    cfg = llm.core.model_config
    kv_spec = llm.core.executor.kv_cache_spec
    model = _loaded_model(llm)
    if model is None:
        dtype_bytes = DTYPE_BYTES.get(engine_dtype(llm), 2)
        return cost_from_config(cfg, dtype_bytes, kv_spec.bytes_per_token), "config"
    params = list(model.parameters())  # tied weights appear once
    embedding = model.get_submodule("model.embed_tokens").weight.numel()
    lm_head = 0 if cfg.tie_word_embeddings else model.get_submodule("lm_head").weight.numel()
    experts = [p for name, p in model.named_parameters() if ".mlp.experts." in name]
    cost = ModelCost(param_bytes=sum(p.numel() * p.element_size() for p in params),
                     num_params=sum(p.numel() for p in params), embedding_params=embedding, lm_head_params=lm_head,
                     routed_expert_bytes=sum(p.numel() * p.element_size() for p in experts),
                     routed_expert_params=sum(p.numel() for p in experts),
                     **_shape_fields(cfg, kv_spec.bytes_per_token))
    return cost, "loaded model"


def engine_dtype(llm: Any) -> str:
    model = _loaded_model(llm)
    if model is not None:
        return str(next(model.parameters()).dtype).removeprefix("torch.")
    from vdeploy.worker.device import resolve_dtype_name

    return resolve_dtype_name(llm.engine_config, llm.core.model_config)
