"""Which files make up a checkpoint: `model.safetensors.index.json` (tensor -> shard), or a lone
`model.safetensors`, checked against what is actually on disk.

Shard names follow `<prefix>-<i>-of-<n>.safetensors` with widths that vary: DeepSeek-R1 writes
`model-00001-of-000163.safetensors` (5-digit index, 6-digit total), so names are parsed, never formatted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vdeploy.checkpoint.findings import Finding, error, info, warning
from vdeploy.checkpoint.paths import ModelFileRefused, name_problem, read_model_json, resolve_problem
from vdeploy.errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
SHARD_NAME_RE = re.compile(r"^(?P<prefix>.+?)-(?P<index>\d+)-of-(?P<total>\d+)\.safetensors$")
# Pickled model weights by their usual names; training leftovers (training_args.bin, optimizer.pt) are not weights.
PICKLED_WEIGHTS_RE = re.compile(r"^(pytorch_model|model|consolidated)[-.\w]*\.(bin|pt|pth)$")

# Weight formats vdeploy does not load, and what to do about each.
FOREIGN_WEIGHTS = {
    ".bin": ("PyTorch pickle (.bin) weights", ("download the safetensors files of this model instead, or convert: "
             "load with transformers and call save_pretrained(out_dir, safe_serialization=True)")),
    ".pt": ("PyTorch pickle (.pt) weights", "convert to safetensors with transformers' save_pretrained"),
    ".pth": ("PyTorch pickle (.pth) weights", "convert to safetensors with transformers' save_pretrained"),
    ".gguf": ("GGUF (llama.cpp) weights", ("vdeploy serves Hugging Face safetensors checkpoints; download the "
              "original safetensors release (GGUF is only imported for the bundled demo model)")),
}


@dataclass
class ShardMap:
    root: Path
    index_file: str | None  # INDEX_FILE when the checkpoint has one
    files: list[str]  # the shards to read, in shard order (index-listed ones that exist, else files found on disk)
    weight_map: dict[str, str] = field(default_factory=dict)  # tensor -> shard file, from the index
    index_total_size: int | None = None  # the index's metadata.total_size
    listed_files: list[str] = field(default_factory=list)  # every shard the index names (existing or not)
    foreign_weights: list[str] = field(default_factory=list)  # .bin / .gguf / ... files in the directory


def shard_sort_key(name: str) -> tuple[int, str]:
    m = SHARD_NAME_RE.match(name)
    return (int(m.group("index")), name) if m else (0, name)


def discover_shards(root: Path) -> tuple[ShardMap, list[Finding]]:
    """Map the checkpoint at `root`. Raises CheckpointError only when there is nothing to inspect."""
    if not root.exists():
        raise CheckpointError(f"{root} does not exist", hint="pass the checkpoint directory")
    if not root.is_dir():
        raise CheckpointError(f"{root} is not a directory", hint="pass the directory holding config.json and shards")
    names = sorted(p.name for p in root.iterdir() if p.is_file())
    on_disk = sorted((n for n in names if n.endswith(".safetensors")), key=shard_sort_key)
    foreign = [n for n in names if n.endswith(".gguf") or PICKLED_WEIGHTS_RE.match(n)]
    findings: list[Finding] = []
    for n in foreign:
        what, todo = FOREIGN_WEIGHTS[Path(n).suffix]
        severity = warning if on_disk else error
        findings.append(severity("foreign_weights", f"{what}: vdeploy loads only safetensors"
                                 + ("; this file is ignored" if on_disk else ""), file=n, hint=todo))

    shard_map = ShardMap(root=root, index_file=None, files=[], foreign_weights=foreign)
    if INDEX_FILE in names:
        shard_map.index_file = INDEX_FILE
        findings.extend(_read_index(root / INDEX_FILE, shard_map))
    if shard_map.weight_map:
        listed = sorted(set(shard_map.weight_map.values()), key=shard_sort_key)
        shard_map.listed_files = listed
        usable = []
        for f in listed:
            problem = name_problem(f) or resolve_problem(root, f)
            if problem is not None:
                first = next(t for t, v in shard_map.weight_map.items() if v == f)
                findings.append(error(problem.kind, problem.message, file=f, tensor=first, hint=problem.hint))
            elif not (root / f).is_file():
                count = sum(1 for v in shard_map.weight_map.values() if v == f)
                findings.append(error("missing_shard", f"listed in the index ({count} tensors) but not on disk",
                                      file=f, hint="download the missing shard"))
            else:
                usable.append(f)
        shard_map.files = usable
        for f in on_disk:
            if f not in set(listed):
                findings.append(warning("unlisted_file", "safetensors file on disk that the index does not list; "
                                        "it will not be loaded", file=f,
                                        hint="remove it, or fix the index if it belongs to this checkpoint"))
    else:
        if not on_disk:
            hint = "a checkpoint needs model.safetensors.index.json with its shards, or a single model.safetensors"
            if foreign:
                hint = FOREIGN_WEIGHTS[Path(foreign[0]).suffix][1]
                raise CheckpointError(f"{root} holds no safetensors weights, only {', '.join(foreign)}", hint=hint)
            raise CheckpointError(f"{root} holds no index and no safetensors shard", hint=hint)
        for f in on_disk:
            problem = resolve_problem(root, f)
            if problem is not None:
                findings.append(error(problem.kind, problem.message, file=f, hint=problem.hint))
        shard_map.files = [f for f in on_disk if resolve_problem(root, f) is None]
        if len(on_disk) > 1 or on_disk[0] != SINGLE_FILE:
            findings.append(warning("no_index", f"no {INDEX_FILE}: using the {len(on_disk)} safetensors file(s) "
                                    "found on disk", hint="loaders that need the index will not find the shards"))
    findings.extend(_check_shard_names(shard_map.listed_files or shard_map.files))
    return shard_map, findings


def _read_index(path: Path, shard_map: ShardMap) -> list[Finding]:
    try:  # through the metadata rule: an index linked outside the model directory is not read
        doc = read_model_json(path.parent, path.name)
    except ModelFileRefused as e:
        return [error(e.problem.kind, e.problem.message, file=path.name, hint=e.problem.hint)]
    except CheckpointError as e:
        return [error("bad_index", f"{e.message}; falling back to the shards on disk", file=path.name)]
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        return [error("bad_index", "no usable weight_map; falling back to the shards on disk", file=path.name)]
    shard_map.weight_map = weight_map
    total = (doc.get("metadata") or {}).get("total_size")
    if isinstance(total, (int, float)):
        shard_map.index_total_size = int(total)
    return []


def _check_shard_names(files: list[str]) -> list[Finding]:
    """`-of-N` must agree with the number of shards and the indices must run 1..N without gaps."""
    parsed = [(f, SHARD_NAME_RE.match(f)) for f in files]
    numbered = [(f, m) for f, m in parsed if m]
    if not numbered:
        return []
    totals = {int(m.group("total")) for _, m in numbered}
    findings: list[Finding] = []
    if len(totals) > 1:
        findings.append(warning("shard_names", f"shard names disagree on the shard count: {sorted(totals)}"))
        return findings
    (total,) = totals
    indices = {int(m.group("index")) for _, m in numbered}
    missing = sorted(set(range(1, total + 1)) - indices)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        findings.append(warning("shard_names", f"names say {total} shards but numbers {shown} are not listed"))
    elif len(numbered) == total:
        widths = {(len(m.group("index")), len(m.group("total"))) for _, m in numbered}
        if any(a != b for a, b in widths):
            findings.append(info("shard_names", f"{total} shards named with an index and total of different widths "
                                 f"(e.g. {numbered[0][0]}); parsed by pattern"))
    return findings
