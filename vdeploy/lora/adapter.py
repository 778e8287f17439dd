"""A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors), read and checked on the engine
host before any rank sees it: a rank that failed on a bad adapter would take the whole engine down with it.

Refused, naming the cause: a rank above --max-lora-rank, a target outside q/k/v/o_proj and gate/up/down_proj, a
tensor whose shape does not fit this base model (an adapter trained for another model), a weights file that
resolves outside the adapter directory, and PEFT features these slots cannot hold (DoRA, biases, per-module ranks,
modules_to_save). Only tensor headers are read here; the ranks read their slices of the values.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from vdeploy.config import ModelConfig
from vdeploy.errors import ConfigError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
TARGET_MODULES = ATTENTION_TARGETS + MLP_TARGETS
_TENSOR_NAME = re.compile(r"^(?:base_model\.model\.)?model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])"
                          r"(?:\.[\w-]+)?\.weight$")


class LoRAAdapterError(ConfigError):
    """An adapter that cannot be served (the server answers 400)."""


@dataclass(frozen=True)
class LoRATensorPair:
    layer: int
    module: str  # checkpoint module name: q_proj … down_proj
    a_name: str  # lora_A [r, in]
    b_name: str  # lora_B [out, r]


@dataclass(frozen=True)
class LoRAAdapter:
    name: str
    path: str  # the adapter directory, resolved
    weights_file: str  # adapter_model.safetensors inside it, resolved
    rank: int
    scaling: float  # lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora; folded into B on load
    target_modules: tuple[str, ...]
    pairs: tuple[LoRATensorPair, ...]


def module_shape(model: ModelConfig, module: str) -> tuple[int, int]:
    """(in, out) features of a checkpoint projection of a Llama/Qwen2 layer."""
    q, kv = model.num_heads * model.head_dim, model.num_kv_heads * model.head_dim
    return {"q_proj": (model.hidden_size, q), "k_proj": (model.hidden_size, kv), "v_proj": (model.hidden_size, kv),
            "o_proj": (q, model.hidden_size), "gate_proj": (model.hidden_size, model.intermediate_size),
            "up_proj": (model.hidden_size, model.intermediate_size),
            "down_proj": (model.intermediate_size, model.hidden_size)}[module]


def lora_slot_bytes(model: ModelConfig, max_loras: int, max_rank: int, tp: int, dtype_bytes: int) -> int:
    """Bytes of the adapter slots one tensor-parallel rank holds for all of the model's layers (vdeploy.lora.layers:
    fused layers stack their projections' ranks; column-parallel layers keep all of A and 1/tp of B, row-parallel
    ones 1/tp of A and all of B)."""
    q_in, q_out = module_shape(model, "q_proj")
    kv_out = module_shape(model, "k_proj")[1]
    o_in, o_out = module_shape(model, "o_proj")
    gate_in, gate_out = module_shape(model, "gate_proj")
    down_in, down_out = module_shape(model, "down_proj")
    per_layer = (3 * max_rank * (q_in + (q_out + 2 * kv_out) // tp)  # qkv_proj: column
                 + max_rank * (o_in // tp + o_out)  # o_proj: row
                 + 2 * max_rank * (gate_in + 2 * gate_out // tp)  # gate_up_proj: column
                 + max_rank * (down_in // tp + down_out))  # down_proj: row
    return per_layer * model.num_layers * max_loras * dtype_bytes


def check_model_supports_lora(model: ModelConfig) -> None:
    if model.family not in ("llama", "qwen2"):
        raise ConfigError(f"LoRA adapters are supported for Llama and Qwen2 models, not {model.architecture}",
                          hint="serve this model without --lora-modules / --enable-lora")


_PEFT_DEFAULT_ALPHA = 8


def read_adapter(name: str, path: str | Path, model: ModelConfig, max_rank: int) -> LoRAAdapter:
    """Parse and check the adapter at `path` for `model`; raises LoRAAdapterError with what is wrong."""
    if not name or name != name.strip():
        raise LoRAAdapterError(f"invalid adapter name {name!r}")
    try:  # a path the OS refuses to look at (too long, a NUL byte …) is the client's mistake, not the engine's
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise LoRAAdapterError(f"LoRA adapter {name!r}: {str(path)[:200]} is not a directory",
                                   hint=f"give the directory holding {CONFIG_FILE} and {WEIGHTS_FILE}")
        directory = directory.resolve()
    except (OSError, ValueError) as e:
        raise LoRAAdapterError(f"LoRA adapter {name!r}: the path cannot be used ({type(e).__name__}: "
                               f"{str(e)[:200]})") from None
    config = _read_config(name, directory)
    rank = config.get("r")
    if not isinstance(rank, int) or rank <= 0:
        raise LoRAAdapterError(f"LoRA adapter {name!r}: r must be a positive integer, got {rank!r}")
    if rank > max_rank:
        raise LoRAAdapterError(f"LoRA adapter {name!r} has rank {rank}, above --max-lora-rank {max_rank}",
                               hint=f"restart with --max-lora-rank {rank} or more")
    _refuse_unsupported(name, config)
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise LoRAAdapterError(f"LoRA adapter {name!r}: target_modules must be a list of module names, got "
                               f"{targets!r}")
    unknown = sorted(set(targets) - set(TARGET_MODULES))
    if unknown or not targets:
        raise LoRAAdapterError(
            f"LoRA adapter {name!r} targets {', '.join(unknown) or 'no module'}: only "
            f"{', '.join(TARGET_MODULES)} are supported",
            hint="target_modules must list module names (a regex string is not supported)")
    # PEFT's LoraConfig defaults lora_alpha to 8 when the file leaves it out; PEFT would scale by 8 / r then
    alpha = config.get("lora_alpha", _PEFT_DEFAULT_ALPHA)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise LoRAAdapterError(f"LoRA adapter {name!r}: lora_alpha must be a positive number, got {alpha!r}")
    use_rslora = config.get("use_rslora", False)
    if not isinstance(use_rslora, bool):
        raise LoRAAdapterError(f"LoRA adapter {name!r}: use_rslora must be true or false, got {use_rslora!r}")
    scaling = alpha / math.sqrt(rank) if use_rslora else alpha / rank
    weights = _weights_file(name, directory)
    pairs = _check_tensors(name, weights, model, rank, set(targets))
    return LoRAAdapter(name, str(directory), str(weights), rank, float(scaling), tuple(sorted(targets)), pairs)


def _read_config(name: str, directory: Path) -> dict:
    config_path = directory / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise LoRAAdapterError(f"LoRA adapter {name!r}: {config_path} is missing") from None
    except (OSError, ValueError) as e:  # ValueError: invalid JSON, or bytes that are not UTF-8
        raise LoRAAdapterError(f"LoRA adapter {name!r}: cannot read {config_path} ({e})") from None
    if not isinstance(config, dict):
        raise LoRAAdapterError(f"LoRA adapter {name!r}: {config_path} is not a JSON object")
    peft_type = config.get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        raise LoRAAdapterError(f"LoRA adapter {name!r}: peft_type {peft_type!r} is not LORA")
    return config


def _refuse_unsupported(name: str, config: dict) -> None:
    problems = []
    if config.get("use_dora"):
        problems.append("DoRA (use_dora)")
    if config.get("bias", "none") != "none":
        problems.append(f"bias={config.get('bias')!r}")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        problems.append("per-module ranks (rank_pattern / alpha_pattern)")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config.get('modules_to_save')}")
    if config.get("layers_to_transform") is not None and config.get("layers_pattern"):
        problems.append("layers_pattern")
    if problems:
        raise LoRAAdapterError(f"LoRA adapter {name!r} uses {', '.join(problems)}, which vdeploy does not serve")


def _weights_file(name: str, directory: Path) -> Path:
    candidate = directory / WEIGHTS_FILE
    if not candidate.exists():
        hint = "convert adapter_model.bin to safetensors" if (directory / "adapter_model.bin").exists() else None
        raise LoRAAdapterError(f"LoRA adapter {name!r}: {candidate} is missing", hint=hint)
    resolved = candidate.resolve()
    if not resolved.is_relative_to(directory):  # a symlink out of the directory the operator named
        raise LoRAAdapterError(f"LoRA adapter {name!r}: {WEIGHTS_FILE} resolves to {resolved}, outside {directory}")
    return resolved


def _check_tensors(name: str, weights: Path, model: ModelConfig, rank: int,
                   targets: set[str]) -> tuple[LoRATensorPair, ...]:
    from vdeploy.checkpoint.safetensors_header import read_header

    header, findings = read_header(weights)
    errors = [f for f in findings if f.severity == "error"]
    if errors or not header.readable:
        detail = errors[0].message if errors else "unreadable header"
        raise LoRAAdapterError(f"LoRA adapter {name!r}: {weights.name}: {detail}")
    found: dict[tuple[int, str], dict[str, str]] = {}
    for entry in header.tensors:
        match = _TENSOR_NAME.match(entry.name)
        if match is None:
            raise LoRAAdapterError(f"LoRA adapter {name!r}: tensor {entry.name} is not a LoRA A/B weight of a "
                                   "decoder projection")
        layer, module, which = int(match[1]), match[3], match[4]
        if module not in targets:
            raise LoRAAdapterError(f"LoRA adapter {name!r}: tensor {entry.name} targets {module}, which is not "
                                   f"in target_modules ({', '.join(sorted(targets))})")
        if layer >= model.num_layers:
            raise LoRAAdapterError(f"LoRA adapter {name!r} does not fit this base model: {entry.name} is for layer "
                                   f"{layer}, the model has {model.num_layers} layers")
        in_features, out_features = module_shape(model, module)
        expected = (rank, in_features) if which == "A" else (out_features, rank)
        if tuple(entry.shape) != expected:
            raise LoRAAdapterError(
                f"LoRA adapter {name!r} does not fit this base model: {entry.name} has shape {list(entry.shape)}, "
                f"expected {list(expected)} (r={rank}, {module} {in_features} -> {out_features})",
                hint="the adapter was trained for another base model")
        found.setdefault((layer, module), {})[which] = entry.name
    pairs = []
    for (layer, module), names in sorted(found.items()):
        if set(names) != {"A", "B"}:
            missing = "lora_B" if "A" in names else "lora_A"
            raise LoRAAdapterError(f"LoRA adapter {name!r}: layer {layer} {module} has no {missing} weight")
        pairs.append(LoRATensorPair(layer, module, names["A"], names["B"]))
    if not pairs:
        raise LoRAAdapterError(f"LoRA adapter {name!r}: {weights.name} holds no LoRA weights")
    return tuple(pairs)
