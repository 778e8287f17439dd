"""Helpers for the server tests: a tiny real checkpoint with a real byte-level BPE tokenizer, servers on
127.0.0.1 ephemeral ports in background threads, and reading /metrics."""

from __future__ import annotations

import json
from pathlib import Path

# trained into the test tokenizer; the tiny model's vocabulary matches its size
CORPUS = [
    "Hello world. The capital of France is Paris, and the capital of Italy is Rome.",
    "A server streams tokens to many clients at once; each client reads its own answer.",
    "Numbers 0123456789 and punctuation: (a, b); [c]! {d}? e-f_g",
    "naïve café, déjà vu, straße, 東京, 北京",
] * 25
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 400
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    "{% if thinking is defined and thinking %}<think>\n{% endif %}"  # a chat_template_kwargs variable, as V3.1's
)
MAX_WAITING = 96  # the 64-client test fits; a request with n > 96 meets a full queue


def write_test_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(str(path / "tokenizer.json"))
    config = {"bos_token": None, "eos_token": "<|im_end|>", "chat_template": CHAT_TEMPLATE}
    (path / "tokenizer_config.json").write_text(json.dumps(config))


def write_tiny_model(path: Path) -> Path:
    """A real (random, seeded) Llama checkpoint in HF format plus tokenizer and generation_config.json."""
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint

    write_tiny_checkpoint(path, "llama", dtype="float32", num_shards=1, config_overrides={
        "vocab_size": VOCAB_SIZE, "max_position_embeddings": 512, "bos_token_id": None, "eos_token_id": None,
    })
    write_test_tokenizer(path)
    # a request that sets nothing samples greedily: deterministic tests without passing temperature everywhere
    (path / "generation_config.json").write_text(json.dumps({"temperature": 0.0}))
    return path


def start_server(engine, **settings):
    from vdeploy.server.app import create_app
    from vdeploy.server.runner import ServerThread
    from vdeploy.server.serving_base import ServerSettings

    settings.setdefault("served_model_names", ("tiny",))
    app = create_app(engine, ServerSettings(**settings))
    return ServerThread(app, "127.0.0.1", 0).start()


def metric_value(text: str, name: str, labels: str | None = None) -> float:
    """The value of one sample in Prometheus text format (the first one whose label set contains `labels`)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, _, value = line.rpartition(" ")
        bare = key.split("{", 1)[0]
        if bare == name and (labels is None or labels in key):
            return float(value)
    raise KeyError(f"{name} {labels or ''} not in metrics")


def read_serve_url(proc) -> str:
    """The base URL (http://127.0.0.1:PORT) a `vdeploy serve` subprocess prints once it serves; its output lines up
    to there are consumed."""
    for line in proc.stdout:
        if "serving" in line and "/v1" in line:
            return line.split(" at ", 1)[1].split("/v1", 1)[0]
    raise AssertionError("serve never came up")
