"""Tokenizer and chat template from a Hugging Face model directory, without running any repository code.

`tokenizer.json` is loaded by the `tokenizers` library; special tokens and the chat template come from
`tokenizer_config.json` (or `chat_template.jinja` / `chat_template.json`, or an override file). The template is
rendered in jinja2's immutable sandbox, so a hostile template can neither touch Python objects nor the file system.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from vdeploy.checkpoint.paths import model_file, read_model_json
from vdeploy.errors import CheckpointError, ConfigError

# what a chat template is given besides a caller's extra variables, which may not replace them: apply_chat_template's
# arguments and globals, and jinja's own globals
TEMPLATE_VARIABLES = frozenset({"messages", "add_generation_prompt", "tools", "bos_token", "eos_token", "pad_token",
                                "raise_exception", "strftime_now",
                                "range", "dict", "lipsum", "cycler", "joiner", "namespace"})


def _token_text(value: Any) -> str | None:
    """Special tokens in tokenizer_config.json are strings or AddedToken dicts ({"content": ..., ...})."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _pick_template(value: Any) -> str | None:
    """`chat_template` is a string, or a list of {"name", "template"} with a "default" entry."""
    if isinstance(value, list):
        by_name = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        return by_name.get("default") or next(iter(by_name.values()), None)
    return value if isinstance(value, str) else None


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's (GPT-2's) printable stand-in for each byte, inverted: printable Latin-1 bytes stand for
    themselves, the other 68 take the code points from 256 up, in byte order. Llama-3, Qwen2 and DeepSeek-V3 store
    their vocabularies in it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(others)}}


def _byte_fallback(piece: str) -> bytes | None:  # SentencePiece's byte tokens: "<0xE6>"
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            return None
    return None


def _raise_exception(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False):
    # jinja2's own tojson HTML-escapes; chat templates expect plain JSON
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class Tokenizer:
    def __init__(self, backend, config: dict[str, Any], chat_template: str | None):
        self._tok = backend  # tokenizers.Tokenizer
        self.config = config
        self.chat_template = chat_template
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        self.pad_token = _token_text(config.get("pad_token"))
        self.bos_token_id = self.token_to_id(self.bos_token) if self.bos_token else None
        self.eos_token_id = self.token_to_id(self.eos_token) if self.eos_token else None
        self.add_bos_token = bool(config.get("add_bos_token", False))
        added = self._tok.get_added_tokens_decoder()  # id -> AddedToken: read once, used twice
        self.all_special_ids = sorted(
            {token_id for token_id, tok in added.items() if tok.special}
            | {i for i in (self.bos_token_id, self.eos_token_id) if i is not None}
        )
        self._compiled_template = None
        from tokenizers import decoders

        self._added_ids = frozenset(added)
        self._byte_alphabet = _byte_level_alphabet() if isinstance(self._tok.decoder, decoders.ByteLevel) else None

    @classmethod
    def from_dir(cls, path: str | Path, chat_template_file: str | Path | None = None) -> Tokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(path)
        tok_file = model_file(path, "tokenizer.json")  # model_file / read_model_json: never a file outside `path`
        if tok_file is None:
            raise CheckpointError(
                f"no tokenizer.json in {path}", hint="vdeploy needs a fast-tokenizer file (tokenizer.json)"
            )
        backend = HFTokenizer.from_file(str(tok_file))
        config = read_model_json(path, "tokenizer_config.json") or {}
        template = _pick_template(config.get("chat_template"))
        if (jinja_file := model_file(path, "chat_template.jinja")) is not None:
            template = jinja_file.read_text()
        elif (template_doc := read_model_json(path, "chat_template.json")) is not None:
            template = _pick_template(template_doc.get("chat_template"))
        if chat_template_file is not None:
            template_path = Path(chat_template_file)
            if not template_path.is_file():
                raise ConfigError(f"chat template file not found: {template_path}")
            template = template_path.read_text()
        return cls(backend, config, template)

    # ---- tokens -------------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        # Some configs ask for BOS without a post-processor in tokenizer.json that adds it.
        wants_bos = add_special_tokens and self.add_bos_token and self.bos_token_id is not None
        if wants_bos and (not ids or ids[0] != self.bos_token_id):
            ids = [self.bos_token_id, *ids]
        return ids

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(token_ids, skip_special_tokens=skip_special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for, also where they are only part of a character (a CJK character or an emoji
        split over byte tokens, which decode alone as U+FFFD): OpenAI's logprobs `bytes`, from which a client
        rebuilds the text."""
        piece = self._tok.id_to_token(token_id)
        if piece is not None and token_id not in self._added_ids:
            if self._byte_alphabet is not None and all(c in self._byte_alphabet for c in piece):
                return bytes(self._byte_alphabet[c] for c in piece)
            raw = _byte_fallback(piece)
            if raw is not None:
                return raw
        return self.decode([token_id], skip_special_tokens=False).encode("utf-8")

    # ---- chat ---------------------------------------------------------------------------------------------------
    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        **template_kwargs: Any,
    ) -> str:
        if not self.chat_template:
            raise ConfigError(
                "this model has no chat template",
                hint="pass a template file (--chat-template) or send a plain prompt (--no-chat / completions)",
            )
        from jinja2.exceptions import TemplateError

        template = self._compile_template()  # a template that does not parse: ConfigError naming the line
        try:
            return template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                tools=tools,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
                pad_token=self.pad_token or "",
                **template_kwargs,
            )
        except TemplateError as e:
            raise ConfigError(f"chat template error: {e}") from None
        except Exception as e:  # e.g. a caller's variable shadowing a name the template calls (`namespace`)
            raise ConfigError(f"chat template error: {type(e).__name__}: {e}") from None

    def encode_chat(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kw: Any) -> list[int]:
        """Render then tokenize; the template already places BOS, so no special tokens are added again."""
        return self._tok.encode(self.apply_chat_template(messages, add_generation_prompt, **kw), add_special_tokens=False).ids

    def _compile_template(self):
        if self._compiled_template is None:
            from jinja2.exceptions import TemplateSyntaxError
            from jinja2.ext import loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
            env.filters["tojson"] = _tojson
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            try:
                self._compiled_template = env.from_string(self.chat_template)
            except TemplateSyntaxError as e:
                raise ConfigError(f"chat template syntax error at line {e.lineno}: {e.message}",
                                  hint="fix the template, or pass a working one with --chat-template") from None
        return self._compiled_template
