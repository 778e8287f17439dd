"""What the headers say about storage and parameters: bytes per dtype, the shard size distribution and what the odd
shards hold, the weight format in one line, and parameters per component counted tensor by tensor."""

from __future__ import annotations

import statistics
from collections import defaultdict

from vdeploy.checkpoint.checks import Located
from vdeploy.checkpoint.layout import COMPONENTS, SCALE_SUFFIX, component_of, layer_of
from vdeploy.checkpoint.report import DtypeStat, Parameters, ShardOutlier, Storage
from vdeploy.checkpoint.safetensors_header import FP8_DTYPES, ShardHeader
from vdeploy.config import ModelConfig

# A shard more than this fraction away from the median size is an outlier worth explaining.
OUTLIER_FRACTION = 0.10
FP8_NAMES = {"F8_E4M3": "FP8 e4m3", "F8_E5M2": "FP8 e5m2"}


def tally(headers: list[ShardHeader], tensors: dict[str, Located], cfg: ModelConfig | None,
          index_total_size: int | None) -> tuple[Parameters, Storage, int]:
    """Parameters per component, storage per dtype and the bytes serving loads (MTP excluded), in one pass over the
    tensors (R1: ~92k)."""
    from vdeploy.checkpoint.quant_schemes import quant_scheme

    num_layers = cfg.num_layers if cfg else None
    scheme = quant_scheme(cfg.quant) if cfg else None  # AWQ/GPTQ: a qweight holds 8 parameters per int32
    by_component = dict.fromkeys(COMPONENTS, 0)
    counts: dict[str, int] = defaultdict(int)
    sizes: dict[str, int] = defaultdict(int)
    weights_2d: dict[str, int] = defaultdict(int)  # dtype -> bytes of 2-D parameter tensors
    scales = mtp_bytes = 0
    scheme_bytes = scheme_params = 0  # the quantized linears' tensors, as stored
    for name, loc in tensors.items():
        entry = loc.entry
        nbytes = entry.end - entry.begin
        counts[entry.dtype] += 1
        sizes[entry.dtype] += nbytes
        is_scale = name.endswith(SCALE_SUFFIX)
        component = component_of(name[: -len(SCALE_SUFFIX)] if is_scale else name, num_layers)
        if component == "mtp":
            mtp_bytes += nbytes
        if is_scale:  # FP8 scales are storage, not parameters
            scales += 1
            continue
        if component is None:
            continue
        params = entry.numel if scheme is None else scheme.params_in(name, entry.numel)
        if scheme is not None and component != "mtp" and scheme.holds(name, entry.dtype):
            scheme_bytes += nbytes
            scheme_params += params
        by_component[component] = by_component.get(component, 0) + params
        if len(entry.shape) == 2:
            weights_2d[entry.dtype] += nbytes
    total = sum(n for c, n in by_component.items() if c != "mtp")
    active = total
    if cfg is not None and cfg.is_moe and cfg.n_routed_experts:
        routed = by_component["routed_experts"]
        active = total - routed + routed * cfg.num_experts_per_tok // cfg.n_routed_experts
    parameters = Parameters(total=total, active=active, mtp=by_component.get("mtp", 0), by_component=by_component)

    dtypes = sorted((DtypeStat(d, counts[d], sizes[d]) for d in counts), key=lambda st: -st.bytes)
    files = [h.file_size for h in headers]
    median = int(statistics.median(files)) if files else 0
    outliers = [ShardOutlier(h.file, h.file_size, describe_contents(h, cfg)) for h in headers
                if median and abs(h.file_size - median) > OUTLIER_FRACTION * median]
    tensor_bytes = sum(sizes.values())
    storage = Storage(
        weight_format=(scheme_format(scheme, scheme_bytes, scheme_params, weights_2d) if scheme is not None
                       else weight_format(weights_2d, scales, cfg)),
        dtypes=dtypes,
        shard_count=len(headers),
        shard_min=min(files, default=0),
        shard_median=median,
        shard_max=max(files, default=0),
        standard_shard_size=median,
        outliers=outliers,
        index_total_size=index_total_size,
        tensor_bytes=tensor_bytes,
        file_bytes=sum(files),
        header_bytes=sum(files) - tensor_bytes,
    )
    return parameters, storage, tensor_bytes - mtp_bytes


def weight_format(weights_2d: dict[str, int], scales: int, cfg: ModelConfig | None) -> str:
    """The linear weights' storage format, as measured (it corrects the "R1 is FP16" folklore)."""
    if not weights_2d:
        return "no 2-D weights"
    total = sum(weights_2d.values())
    fp8 = {d: n for d, n in weights_2d.items() if d in FP8_DTYPES}
    if fp8:
        # FP8 whenever the linears are FP8, even where BF16 embeddings hold most bytes (a small model's vocab)
        main = max(fp8, key=fp8.__getitem__)
        share = fp8[main] / total
        block = cfg.quant.weight_block_size if cfg and cfg.quant else None
        blocks = f" with {block[0]}×{block[1]} block scales" if block else " with scales"
        rest = ", ".join(f"{d} {n / total:.0%}" for d, n in sorted(weights_2d.items(), key=lambda kv: -kv[1])
                         if d not in FP8_DTYPES)
        return (f"{FP8_NAMES[main]} ({main}) weights{blocks} ({scales:,} float32 weight_scale_inv tensors); "
                f"{share:.0%} of the 2-D weight bytes" + (f" (the rest {rest}: embeddings, routers, lm_head)"
                                                          if rest else "") + "; not FP16")
    main = max(weights_2d, key=weights_2d.__getitem__)
    share = weights_2d[main] / total
    return f"{main} weights ({share:.0%} of the 2-D weight bytes), not quantized"


def scheme_format(scheme, scheme_bytes: int, scheme_params: int, weights_2d: dict[str, int]) -> str:
    """AWQ / GPTQ / compressed-tensors: the scheme and the measured bytes per quantized weight."""
    per_param = f"{scheme_bytes / scheme_params:.3f} bytes per quantized weight" if scheme_params else "no weights"
    share = scheme_bytes / sum(weights_2d.values()) if weights_2d else 0.0
    return (f"{scheme.describe()}: {per_param} as stored (scales and zeros included); the quantized linears are "
            f"{share:.0%} of the 2-D weight bytes (the rest: embeddings, lm_head)")


def describe_contents(shard: ShardHeader, cfg: ModelConfig | None) -> str:
    """E.g. "layers 58-60, model.norm, lm_head" or "layer 61 (MTP: embed_tokens, eh_proj, shared_head, experts)"."""
    layers: set[int] = set()
    others: list[str] = []
    for t in shard.tensors:
        if t.name.endswith(SCALE_SUFFIX):
            continue
        layer = layer_of(t.name)
        if layer is None:
            others.append(t.name.removesuffix(".weight"))
        else:
            layers.add(layer)
    mtp_from = cfg.num_layers if cfg else None
    parts = []
    main = sorted(i for i in layers if mtp_from is None or i < mtp_from)
    mtp = sorted(i for i in layers if mtp_from is not None and i >= mtp_from)
    if main:
        parts.append(_ranges("layer", main))
    if mtp:
        parts.append(_ranges("layer", mtp) + " (MTP module)")
    parts.extend(others)
    return ", ".join(parts) or "no tensors"


def _ranges(word: str, values: list[int]) -> str:
    spans: list[str] = []
    start = prev = values[0]
    for v in values[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    plural = "s" if len(values) > 1 else ""
    return f"{word}{plural} " + ", ".join(spans)
