"""A profile's max_model_len is a ceiling for a class of models: serving a model with a shorter context through it
(demo-cpu's 4096 on a 512-position checkpoint) used to accept prompts the model has no positions for, and the
first one crashed the engine. The model's own limit wins over the profile; explicit settings stay as given."""

from vdeploy.server.deployment import ServeOptions, resolve_deployment


def test_profile_context_is_capped_at_the_models_positions(tiny_model_dir):
    dep = resolve_deployment(ServeOptions(model=str(tiny_model_dir), profile="demo-cpu"))
    assert dep.profile.engine.max_model_len == 4096 and dep.model_config.max_position_embeddings == 512
    assert dep.engine_config.scheduler.max_model_len == 512
    assert dep.provenance["max_model_len"] == "profile:demo-cpu, capped at the model's 512"


def test_explicit_context_settings_are_not_capped(tiny_model_dir, monkeypatch):
    flagged = resolve_deployment(ServeOptions(model=str(tiny_model_dir), profile="demo-cpu",
                                              engine_flags={"max_model_len": 300}))
    assert (flagged.engine_config.scheduler.max_model_len, flagged.provenance["max_model_len"]) == (300, "flag")
    monkeypatch.setenv("VDEPLOY_MAX_MODEL_LEN", "1024")  # the engine refuses it (tests/engine), not silently capped
    from_env = resolve_deployment(ServeOptions(model=str(tiny_model_dir), profile="demo-cpu"))
    assert from_env.engine_config.scheduler.max_model_len == 1024
