"""A small byte-level BPE tokenizer trained in the test, written as a Hugging Face model directory's tokenizer files.

Byte-level BPE is what the served models use (Llama 3, Qwen2, DeepSeek, SmolLM2): characters outside the learned
merges are split into single-byte tokens, which is exactly what incremental detokenization must survive.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "Hello world. The capital of France is Paris.",
    "The end is near, the end is here. Hello again, world!",
    "naïve café déjà vu, über straße",
    "日本語のテキスト and 中文 text",
    "stop here please stop STOP",
] * 20

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role ' + m['role']) }}{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_tokenizer_dir(path: Path, chat_template: str = CHAT_TEMPLATE) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    config = {
        "bos_token": {"content": "<|im_start|>", "lstrip": False, "normalized": False, "special": True},
        "eos_token": "<|im_end|>",
        "chat_template": chat_template,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path
