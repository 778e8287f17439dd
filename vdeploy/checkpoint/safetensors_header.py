"""Read and validate one safetensors shard's header without touching its tensor data. The one parser of vdeploy:
`inspect-shards` and the weight loader (vdeploy.models.shard_reader) both read headers here, so they cannot disagree
on size limits or offsets.

A shard is: 8 bytes little-endian header length N, N bytes of JSON ({name: {dtype, shape, data_offsets}, optional
"__metadata__"}), then the data region. Offsets are relative to the start of the data region (8 + N). Reading only
the header is what makes a 688 GB checkpoint inspectable in a second.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from vdeploy.checkpoint.findings import Finding, error, warning

# A real header is a few hundred KB even for shards with thousands of tensors; more than this is corruption (or a
# file that is not safetensors at all) and must not be read into memory.
MAX_HEADER_BYTES = 100 * 1000 * 1000

# safetensors dtype -> bytes per element. F4 / packed types are not listed: vdeploy cannot load them.
DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}
FP8_DTYPES = ("F8_E4M3", "F8_E5M2")


@dataclass(slots=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # data offsets relative to the data region
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass
class ShardHeader:
    file: str  # name relative to the checkpoint directory
    file_size: int
    header_size: int = 0  # N, the JSON length (0 when the header could not be read)
    tensors: list[TensorEntry] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    readable: bool = False  # False: the header itself is unusable; tensors is empty

    @property
    def data_start(self) -> int:
        return 8 + self.header_size

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def read_header(path: Path, name: str | None = None) -> tuple[ShardHeader, list[Finding]]:
    """Parse `path`'s header. Never raises for a bad file: problems come back as findings naming file and tensor."""
    name = name or path.name
    findings: list[Finding] = []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            shard = ShardHeader(file=name, file_size=size)
            prefix = f.read(8)
            if len(prefix) < 8:
                return shard, [error("bad_header", f"{size} bytes: too short to hold a safetensors header",
                                     file=name, hint="re-download this shard")]
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                return shard, [error("absurd_header_length",
                                     f"header length {length:,} bytes is absurd (limit {MAX_HEADER_BYTES:,}): "
                                     "not a safetensors file or corrupt", file=name, hint="re-download this shard")]
            if 8 + length > size:
                return shard, [error("absurd_header_length",
                                     f"header length {length:,} runs past the end of the {size:,}-byte file",
                                     file=name, hint="the download is truncated; re-download this shard")]
            raw = f.read(length)
    except PermissionError:
        return ShardHeader(file=name, file_size=0), [error(
            "unreadable_file", "permission denied: this user cannot read the shard", file=name,
            hint=f"make it readable (chmod a+r {name}) or run as the user that downloaded it")]
    except OSError as e:
        return ShardHeader(file=name, file_size=0), [error("unreadable_file", f"cannot read: {e.strerror or e}",
                                                           file=name, hint="check the file and re-download it")]

    shard.header_size = length
    repeats = _RepeatedKeys()
    try:
        doc = json.loads(raw, object_pairs_hook=repeats)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        return shard, [error("bad_header", f"header is not valid JSON ({e})", file=name,
                             hint="re-download this shard")]
    if not isinstance(doc, dict):
        return shard, [error("bad_header", "header JSON is not an object", file=name)]
    findings.extend(repeats.findings(doc, name))

    meta = doc.pop("__metadata__", None)
    if isinstance(meta, dict):
        shard.metadata = {str(k): str(v) for k, v in meta.items()}
    for tensor_name, spec in doc.items():
        entry, problem = _parse_entry(tensor_name, spec, name)
        if problem is not None:
            findings.append(problem)
        if entry is not None:
            shard.tensors.append(entry)
    shard.readable = True
    findings.extend(_check_offsets(shard))
    return shard, findings


class _RepeatedKeys:
    """json object_pairs_hook that remembers objects written with a key twice. json.loads silently keeps the last
    value, other readers may keep the first: a tensor named twice in one header (or an entry with two data_offsets)
    could load different bytes in vdeploy than in the tool that checked the file, so it is refused, never resolved."""

    def __init__(self) -> None:
        self._seen: list[tuple[dict, list[str]]] = []

    def __call__(self, pairs: list[tuple[str, object]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):  # rare: only then find which keys repeat
            counts: dict[str, int] = {}
            for key, _ in pairs:
                counts[key] = counts.get(key, 0) + 1
            self._seen.append((obj, [k for k, n in counts.items() if n > 1]))
        return obj

    def findings(self, doc: dict, file: str) -> list[Finding]:
        out: list[Finding] = []
        for obj, keys in self._seen:
            if obj is doc:  # the top level: tensor names
                out.extend(error("duplicate_tensor", "named twice in this header; which entry loads is undefined",
                                 file=file, tensor=key, hint="the header is corrupt; re-download this shard")
                           for key in keys)
                continue
            tensor = next((t for t, spec in doc.items() if spec is obj), None)
            out.append(error("bad_header", f"entry repeats the key(s) {', '.join(map(repr, keys))}; which value "
                             "applies is undefined", file=file, tensor=tensor,
                             hint="the header is corrupt; re-download this shard"))
        return out


def _parse_entry(tensor: str, spec: object, file: str) -> tuple[TensorEntry | None, Finding | None]:
    # exact type checks, no generator per entry: R1 has ~92k entries and the whole inspection must take < 2 s
    try:
        dtype, shape, (begin, end) = spec["dtype"], spec["shape"], spec["data_offsets"]  # type: ignore[index]
        numel = math.prod(shape)  # an int only when every dimension is one
        well_formed = (type(dtype) is str and type(shape) is list and type(numel) is int and type(begin) is int
                       and type(end) is int and begin >= 0 and (not shape or min(shape) >= 0))
    except (TypeError, KeyError, ValueError):
        well_formed = False
    if not well_formed:
        return None, error("bad_header", f"malformed tensor entry {json.dumps(spec)[:120]}", file=file, tensor=tensor)
    entry = TensorEntry(tensor, dtype, tuple(shape), begin, end)
    if end < begin:
        return entry, error("offsets_out_of_order", f"data_offsets [{begin}, {end}] end before they begin",
                            file=file, tensor=tensor, hint="the header is corrupt; re-download this shard")
    itemsize = DTYPE_SIZES.get(dtype)
    if itemsize is None:
        return entry, error("unsupported_dtype", f"dtype {dtype} is not supported by vdeploy",
                            file=file, tensor=tensor,
                            hint="use a checkpoint in BF16/FP16/FP32 or DeepSeek block FP8 (F8_E4M3)")
    if numel * itemsize != end - begin:
        return entry, error("size_mismatch",
                            f"shape {shape} × {dtype} needs {numel * itemsize:,} bytes "
                            f"but data_offsets span {end - begin:,}", file=file, tensor=tensor)
    return entry, None


def _check_offsets(shard: ShardHeader) -> list[Finding]:
    """Tensors must tile the data region: no overlap, no hole, nothing past the end of the file."""
    findings: list[Finding] = []
    ordered = sorted((t for t in shard.tensors if t.end >= t.begin), key=lambda t: (t.begin, t.end))
    cursor = 0
    previous: TensorEntry | None = None
    for t in ordered:
        if t.begin < cursor and previous is not None:
            findings.append(error("offsets_overlap",
                                  f"data [{t.begin:,}, {t.end:,}) overlaps {previous.name} [{previous.begin:,}, "
                                  f"{previous.end:,})", file=shard.file, tensor=t.name,
                                  hint="the header is corrupt; re-download this shard"))
        elif t.begin > cursor:
            findings.append(warning("offsets_gap", f"{t.begin - cursor:,} unused bytes before this tensor's data",
                                    file=shard.file, tensor=t.name))
        if t.end > cursor:
            cursor, previous = t.end, t
    available = shard.file_size - shard.data_start
    past = [t for t in ordered if t.end > available]
    if past:
        first = past[0]
        findings.append(error("data_past_eof",
                              f"{len(past)} tensor(s) end past the end of the file: data region is {available:,} "
                              f"bytes but {first.name} ends at {first.end:,} (a truncated download)",
                              file=shard.file, tensor=first.name, hint="re-download this shard"))
    elif cursor < available:
        findings.append(warning("trailing_bytes", f"{available - cursor:,} bytes after the last tensor's data",
                                file=shard.file))
    return findings
