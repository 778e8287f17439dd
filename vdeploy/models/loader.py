"""Build a model and fill its weights: on the meta device first (no memory), then materialised empty on the
target device, then filled in place from the safetensors shards, each rank reading only its own slices
(one open per shard; `get_slice` windows read with positioned reads, see shard_reader). Host memory never holds a
second copy of the weights: on CPU each slice is read straight into its parameter; otherwise (a GPU, a dtype
conversion) it streams through two reused staging chunks of at most 64 MiB (shard_reader.StagingBuffer), which for
a GPU are page-locked so that reading one chunk from the file overlaps copying the previous one to the device.

`load_format="dummy"` fills seeded random weights at the config's shapes instead (no checkpoint needed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vdeploy.checkpoint.validate import CheckpointInvalidError
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.dtypes import ACTIVATION, torch_dtypes
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.errors import CheckpointError, ConfigError
from vdeploy.layers.quantization import DecodeRowPinning
from vdeploy.layers.weight_loading import LoadedWeight, WeightShapeError, default_weight_loader
from vdeploy.models.registry import get_model_class
from vdeploy.models.shard_reader import SafetensorsShard, StagingBuffer

DTYPES = torch_dtypes(ACTIVATION)  # every activation dtype spelling -> torch dtype (vdeploy.dtypes)
DUMMY_INIT_STD = 0.02  # like the usual initializer_range: keeps activations of random models in a sane range


@dataclass(frozen=True)
class LoadStats:
    files: int
    weight_bytes: int  # bytes of this rank's parameters
    seconds: float

    @property
    def gb_per_s(self) -> float:
        return self.weight_bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0


def resolve_dtype(dtype: str | torch.dtype | None, model_config: ModelConfig) -> torch.dtype:
    """auto -> the checkpoint's torch_dtype (float32/bfloat16/float16; anything else, e.g. fp8, -> bfloat16)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = (dtype or "auto").lower()
    if name == "auto":
        return DTYPES.get(model_config.torch_dtype.lower(), torch.bfloat16)
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}", hint="use auto, bfloat16, float16 or float32")
    return DTYPES[name]


def checkpoint_files(path: str | Path, model_config: ModelConfig | None = None, tp: int = 1) -> list[Path]:
    """The safetensors shards of a checkpoint directory, in index order when there is an index, after the header
    validation `inspect-shards` runs (vdeploy.checkpoint.validate): raises CheckpointInvalidError naming file,
    tensor, problem and remedy before any tensor data is read."""
    from vdeploy.checkpoint.validate import refusal, validate_for_loading, validate_headers

    root = Path(path)
    if model_config is not None:
        validation = validate_for_loading(root, model_config, tp)
    else:
        validation = validate_headers(root, None)
        if validation.errors:
            raise refusal(root, validation.errors)
    return [root / name for name in validation.shard_map.files]


def build_on_meta(model_config: ModelConfig, parallel: ParallelState, dtype: torch.dtype,
                  mtp: bool = False) -> nn.Module:
    """mtp: also build the checkpoint's multi-token-prediction module (DeepSeek-V3/R1), the MTP draft model."""
    model_cls = get_model_class(model_config)
    with torch.device("meta"):
        return model_cls(model_config, parallel, dtype, mtp=True) if mtp else model_cls(model_config, parallel, dtype)


def materialize(model: nn.Module, device: torch.device) -> None:
    """Allocate every parameter and buffer (uninitialised) on `device`, keeping the loading metadata attached to
    the parameters (to_empty creates new Parameter objects), then compute derived buffers (rotary caches)."""
    attrs = {name: dict(p.__dict__) for name, p in model.named_parameters(remove_duplicate=False)}
    model.to_empty(device=device)
    for name, param in model.named_parameters(remove_duplicate=False):
        param.__dict__.update(attrs[name])
    for module in model.modules():
        if hasattr(module, "initialize_buffers"):
            module.initialize_buffers()


def fill_dummy(model: nn.Module, seed: int, skip: nn.Module | None = None, style: str = "normal") -> None:
    """Seeded random weights. style "normal": N(0, 0.02) generated in float32 then cast (works for fp8 too);
    parameters tagged with `dummy_fill` (norm weights) get that constant; modules may override with
    `fill_dummy_weights(gen)`. style "uniform": every float tensor U(-1e-3, 1e-3) and integer ones zero, as vLLM's
    dummy loader fills them, so a benchmark against `vllm --load-format dummy` runs the same workload (with such
    weights a DeepSeek-V3 router's choice is decided by its correction bias, a V2 router's by vLLM's bf16 softmax
    ties — `after_uniform_dummy_fill` — so every token picks the same experts).
    `skip`: a submodule left alone (filled separately)."""
    params = dict(model.named_parameters())
    device = next(iter(params.values())).device
    generator = torch.Generator(device=device).manual_seed(seed)
    handled: set[int] = set() if skip is None else {id(p) for p in skip.parameters()}
    skipped = set() if skip is None else {id(m) for m in skip.modules()}
    if style == "uniform":
        with torch.no_grad():
            for param in params.values():
                if id(param) not in handled:
                    _fill_uniform(param, generator)
        for module in model.modules():  # what vLLM's numerics make of its draw (a module says, e.g. DeepseekMoE)
            if id(module) not in skipped and hasattr(module, "after_uniform_dummy_fill"):
                module.after_uniform_dummy_fill()
        return
    for module in model.modules():
        if id(module) in skipped:
            continue
        if hasattr(module, "fill_dummy_weights"):
            module.fill_dummy_weights(generator)
            handled.update(id(p) for p in module.parameters())
    with torch.no_grad():
        for param in params.values():
            if id(param) in handled:
                continue
            if hasattr(param, "dummy_fill"):
                param.fill_(param.dummy_fill)
            elif param.is_floating_point():
                noise = torch.empty(param.shape, dtype=torch.float32, device=device)
                param.copy_(noise.normal_(0.0, DUMMY_INIT_STD, generator=generator))
            else:
                param.zero_()


def _fill_uniform(param: torch.Tensor, generator: torch.Generator, bound: float = 1e-3) -> None:
    """U(-bound, bound) drawn in float32 and cast (fp8 included), in chunks of rows of at most 2**26 elements (a
    float32 copy of all of an R1 layer's experts would need 30 GB)."""
    if not param.is_floating_point():
        param.zero_()
        return
    rows = param if param.dim() > 1 else param.view(1, -1)
    for part in rows.split(max(1, (1 << 26) // rows[0].numel())):
        noise = torch.empty(part.shape, dtype=torch.float32, device=part.device)
        part.copy_(noise.uniform_(-bound, bound, generator=generator))


class WeightFiller:
    """Routes checkpoint tensors to the model's parameters (through each parameter's weight_loader) and knows
    which expected tensors have not arrived yet. Independent of where the tensors come from."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = dict(model.named_parameters())
        self.loaded: set[tuple[str, Any]] = set()

    def load(self, source: str, tensor_name: str, weight: LoadedWeight) -> None:
        from vdeploy.checkpoint.kv_scales import apply_kv_scale, kv_scale_target, scale_value

        kv_scale = kv_scale_target(tensor_name)
        if kv_scale is not None:  # an fp8 KV-cache scale: a float on the layer's attention, not a parameter
            apply_kv_scale(self.model, *kv_scale, scale_value(source, tensor_name, weight))
            return
        target = self.model.map_checkpoint_name(tensor_name)
        if target is None:
            return
        param_name, shard_id = target
        param = self.params.get(param_name)
        if param is None and self._zero_bias_of_a_packed_linear(source, tensor_name, param_name, weight):
            return
        if param is None:
            raise CheckpointError(f"{source}: tensor {tensor_name} has no place in {type(self.model).__name__}",
                                  hint="the checkpoint does not match its config.json")
        loader = getattr(param, "weight_loader", default_weight_loader)
        try:
            loader(param, weight, shard_id)
        except WeightShapeError as e:
            tp = getattr(getattr(self.model, "parallel", None), "tp_size", 1)
            hint = ("the tensor-parallel split does not fall on whole quantization blocks; "
                    "`vdeploy inspect-shards DIR --tp N` says which sizes work") if "quantization block" in str(e) \
                else "the checkpoint does not match its config.json"
            raise CheckpointError(f"{source}: tensor {tensor_name}: {e}" + (f" (TP {tp})" if tp > 1 else ""),
                                  hint=hint) from None
        self.loaded.add((param_name, shard_id))

    def _zero_bias_of_a_packed_linear(self, source: str, tensor_name: str, param_name: str,
                                      weight: LoadedWeight) -> bool:
        """AutoGPTQ exported a bias for every quantized linear, zeros where the model has none: such a tensor adds
        nothing and is skipped. One that is not all zero is refused: dropping it would change the model."""
        if not param_name.endswith(".bias") or f"{param_name.removesuffix('.bias')}.qweight" not in self.params:
            return False
        if torch.count_nonzero(weight[:]).item():
            raise CheckpointError(f"{source}: tensor {tensor_name} is a bias this {type(self.model).__name__} layer "
                                  "does not have, and it is not zero: refusing rather than dropping it",
                                  hint="the checkpoint does not match its config.json")
        return True

    def missing(self) -> list[str]:
        """Checkpoint names of the expected tensors not loaded so far."""
        return [
            self.model.checkpoint_name_of(name, shard_id)
            for name, param in self.params.items()
            for shard_id in getattr(param, "shard_ids", [None])
            if (name, shard_id) not in self.loaded
        ]


def load_safetensors(model: nn.Module, files: list[Path], *, show_progress: bool) -> None:
    filler = WeightFiller(model)
    staging = StagingBuffer()
    with _progress(len(files), show_progress) as advance:
        for file in files:
            with SafetensorsShard(file, staging) as shard:
                for tensor_name in shard.keys():
                    filler.load(file.name, tensor_name, _checked_slice(shard, file, tensor_name))
            advance(file.name)
    missing = filler.missing()
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(
            f"tensor {missing[0]}{more} is missing from {files[0].parent} ({len(files)} safetensors files)",
            hint=f"the download may be incomplete: run `vdeploy inspect-shards {files[0].parent}`",
        )


def _checked_slice(shard: SafetensorsShard, file: Path, name: str) -> LoadedWeight:
    """The tensor for the model: small ones (scales, norms, biases) read whole and checked for values that would
    silently ruin every output (vdeploy.checkpoint.value_checks); the large ones as lazy slices."""
    from vdeploy.checkpoint.value_checks import checked_on_load, value_problem

    info = shard.tensors[name]
    if not checked_on_load(name, info.shape):
        return shard.get_slice(name)
    tensor = shard.get_tensor(name)
    problem = value_problem(name, tensor)
    if problem is not None:
        raise CheckpointInvalidError(f"{file.parent}: {file.name}: tensor {name}: {problem}",
                                     hint=f"re-download {file.name}; `vdeploy inspect-shards {file.parent} "
                                     "--verify-data` scans every tensor")
    return tensor


def load_model(engine_config: EngineConfig, model_config: ModelConfig, parallel: ParallelState,
               device: torch.device | str, dtype: str | torch.dtype | None = None, *,
               quiet: bool = False) -> nn.Module:
    """Build `model_config`'s model for this rank on `device` and fill its weights; the result carries
    `load_stats` (LoadStats). dtype None -> engine_config.dtype."""
    start = time.perf_counter()
    device = torch.device(device)
    torch_dtype = resolve_dtype(dtype if dtype is not None else engine_config.dtype, model_config)
    model = build_on_meta(model_config, parallel, torch_dtype, mtp=engine_config.speculative.uses_mtp)
    materialize(model, device)
    num_files = 0
    if engine_config.load_format == "dummy":
        # the MTP draft module from a generator of its own: the main model's weights stay those of a model built
        # without it (speculative and plain runs of the same dummy model give the same tokens)
        style = engine_config.dummy_weights
        fill_dummy(model, engine_config.seed, skip=getattr(model, "mtp", None), style=style)
        if getattr(model, "mtp", None) is not None:
            fill_dummy(model.mtp, engine_config.seed + 1, style=style)
    elif engine_config.load_format in ("safetensors", "auto"):
        files = checkpoint_files(engine_config.model, model_config, parallel.tp_size)
        num_files = len(files)
        load_safetensors(model, files, show_progress=not quiet and parallel.rank == 0)  # one bar per job
    else:
        raise ConfigError(f"unknown load format {engine_config.load_format!r}", hint="use safetensors or dummy")
    # with speculation, verify rows are computed as one-row steps compute them (the runner sets it per forward)
    model.decode_row_pinning = DecodeRowPinning() if engine_config.speculative.enabled else None
    for module in model.modules():
        method = getattr(module, "linear_method", None)
        if method is not None:
            method.process_weights_after_loading(module)
            if model.decode_row_pinning is not None:
                method.pin_decode_rows(model.decode_row_pinning)
    if hasattr(model, "process_weights_after_loading"):  # model-level preparation (DeepSeek: MLA absorption)
        model.process_weights_after_loading()
    model.eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    model.load_stats = LoadStats(num_files, weight_bytes, time.perf_counter() - start)
    return model


class _progress:
    """A Rich progress bar over shards on stderr (stdout stays clean for --json), or nothing when quiet."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self._bar = total, enabled, None

    def __enter__(self):
        if not self.enabled:
            return lambda name: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("loading weights"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("{task.description}"),
                             console=Console(stderr=True), transient=True)
        self._bar.start()
        task = self._bar.add_task("", total=self.total)
        return lambda name: self._bar.update(task, advance=1, description=name)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False
