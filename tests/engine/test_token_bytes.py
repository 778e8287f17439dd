"""Tokenizer.token_bytes: the bytes one token stands for, also where a character is split over several tokens
(logprobs' `bytes`, from which a client rebuilds CJK text and emoji); checked against the tokenizer's own decoding
of the whole sequence, for byte-level BPE (Llama-3, Qwen2, DeepSeek-V3) and SentencePiece-style byte fallback."""

import json

import pytest
from engine_test_tokenizer import write_tokenizer_dir

from vdeploy.engine.tokenizer import Tokenizer

TEXTS = ["Hello 世界 🎉🐱 naïve", "東京 — déjà vu", "<|im_start|>user\nhi<|im_end|>"]


@pytest.mark.parametrize("text", TEXTS)
def test_byte_level_tokens_join_to_the_text(tmp_path, text):
    tok = Tokenizer.from_dir(write_tokenizer_dir(tmp_path))
    ids = tok.encode(text, add_special_tokens=False)
    assert any("\ufffd" in tok.decode([i]) for i in ids) or text.isascii() or "<|" in text
    assert b"".join(tok.token_bytes(i) for i in ids) == tok.decode(ids, skip_special_tokens=False).encode("utf-8")


def _byte_fallback_tokenizer(path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers

    vocab = {"<unk>": 0, "▁": 1, "a": 2, "▁a": 3, **{f"<0x{b:02X}>": 4 + b for b in range(256)}}
    backend = HFTokenizer(models.BPE(vocab, [("▁", "a")], unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    path.mkdir()
    backend.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({}))
    return Tokenizer.from_dir(path)


def test_byte_fallback_tokens_are_their_byte(tmp_path):
    tok = _byte_fallback_tokenizer(tmp_path / "sp")
    ids = tok.encode("a 世", add_special_tokens=False)
    split = [i for i in ids if tok.decode([i]) == "\ufffd"]
    assert len(split) == 3  # 世 is three UTF-8 bytes, one token each
    assert b"".join(tok.token_bytes(i) for i in split) == "世".encode("utf-8")
