"""The safetensors format read and written with the standard library and torch only.

A safetensors file is: an 8-byte little-endian unsigned header length N; N bytes of UTF-8 JSON
mapping each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into
the byte buffer that follows the header), plus an optional ``"__metadata__"`` of strings; then the
byte buffer, tensors stored row-major, little-endian.

The reader trusts nothing in the file. It refuses, naming the tensor and the problem:
a header length past the end of the file or above ``MAX_HEADER_BYTES``; a header that is not a
JSON object; an unknown dtype; a shape that is not a list of non-negative integers; offsets that
are not two integers with begin <= end <= the buffer's length; a byte count other than
numel x element size; tensors that overlap or leave holes, or a buffer with bytes past the last
tensor (the official implementation's rules: tensors tile the buffer exactly). Only then does it
copy bytes, each tensor's own slice, so a hostile file cannot make it read outside the buffer.

``load_diffusers_state_dict`` reads a ``.safetensors`` or a torch ``.bin`` (``torch.load`` with
``weights_only=True``, which refuses pickled code) into a module and names every missing,
unexpected or mis-shaped key.
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

#: The official implementation's limit: no real header comes near it.
MAX_HEADER_BYTES = 100 * 1024 * 1024

#: safetensors dtype names -> torch dtypes (those torch 1.13 has; U16/U32/U64/F8 do not exist there).
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}


class SafetensorsError(ValueError):
    """A file that is not valid safetensors, or a tensor this reader cannot represent."""


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _is_int(x: object) -> bool:
    # JSON true/false arrive as bool, which is an int subclass in Python.
    return type(x) is int


def parse_header(header_bytes: bytes, buffer_len: int, source: str = "<bytes>") -> tuple[dict[str, tuple[torch.dtype, list[int], int, int]], dict[str, str]]:
    """Validates a header against a buffer of ``buffer_len`` bytes: {name: (dtype, shape, begin, end)}, metadata."""
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SafetensorsError(f"{source}: header is not UTF-8 JSON ({err})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{source}: header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"{source}: __metadata__ must map strings to strings")
    entries: dict[str, tuple[torch.dtype, list[int], int, int]] = {}
    for name, info in header.items():
        where = f"{source}: tensor {name!r}"
        if not isinstance(info, dict):
            raise SafetensorsError(f"{where}: entry is not an object")
        dtype_name, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype_name not in DTYPES:
            raise SafetensorsError(f"{where}: dtype {dtype_name!r} is not one of {', '.join(DTYPES)}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise SafetensorsError(f"{where}: shape {shape!r} is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise SafetensorsError(f"{where}: data_offsets {offsets!r} is not two integers")
        begin, end = offsets
        if not (0 <= begin <= end <= buffer_len):
            raise SafetensorsError(f"{where}: data_offsets [{begin}, {end}] fall outside the {buffer_len}-byte buffer")
        dtype = DTYPES[dtype_name]
        numel = 1
        for d in shape:
            numel *= d
        if end - begin != numel * _element_size(dtype):
            raise SafetensorsError(f"{where}: {end - begin} bytes for shape {shape} of {dtype_name} (expected {numel * _element_size(dtype)})")
        entries[name] = (dtype, shape, begin, end)
    # Tensors must tile the buffer: sorted by offset, each starts where the previous ended.
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            kind = "overlaps the previous tensor" if begin < position else f"leaves a hole at byte {position}"
            raise SafetensorsError(f"{source}: tensor {name!r} at [{begin}, {end}] {kind}")
        position = end
    if position != buffer_len:
        raise SafetensorsError(f"{source}: {buffer_len - position} bytes after the last tensor (the buffer is {buffer_len} bytes)")
    return entries, metadata


def _split(data: bytes | mmap.mmap, source: str) -> tuple[int, int]:
    """(header length, buffer start) after checking the 8-byte prefix against the data's size."""
    if len(data) < 8:
        raise SafetensorsError(f"{source}: {len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"{source}: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > len(data):
        raise SafetensorsError(f"{source}: header length {n} runs past the end of the {len(data)}-byte file")
    return n, 8 + n


def _tensors(data: bytes | mmap.mmap, source: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if sys.byteorder != "little":
        raise SafetensorsError("safetensors is little-endian; this reader does not byte-swap")
    n, start = _split(data, source)
    entries, metadata = parse_header(bytes(data[8:start]), len(data) - start, source)
    out: dict[str, torch.Tensor] = {}
    with memoryview(data) as view:
        for name, (dtype, shape, begin, end) in entries.items():
            if begin == end:
                out[name] = torch.empty(shape, dtype=dtype)
                continue
            # One aligned, writable copy of exactly this tensor's bytes (offsets were checked above).
            raw = bytearray(view[start + begin : start + end])
            out[name] = torch.frombuffer(raw, dtype=dtype).reshape(shape)
    return out, metadata


def loads(data: bytes) -> dict[str, torch.Tensor]:
    """Tensors from safetensors bytes."""
    return _tensors(data, "<bytes>")[0]


def load_file(path: str | os.PathLike, with_metadata: bool = False):
    """Tensors (CPU, the file's dtypes) from a .safetensors file; with ``with_metadata``, (tensors, metadata)."""
    source = str(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise SafetensorsError(f"{source}: empty file")
        # A map instead of a read: a 3.4 GB U-Net is copied tensor by tensor, never all at once.
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            tensors, metadata = _tensors(data, source)
    return (tensors, metadata) if with_metadata else tensors


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    nbytes = t.numel() * t.element_size()
    return ctypes.string_at(t.data_ptr(), nbytes) if nbytes else b""


def dumps(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes for ``tensors`` (sorted by name; header padded with spaces to 8 bytes, as the official writer does)."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in NAMES:
            raise SafetensorsError(f"tensor {name!r}: dtype {t.dtype} has no safetensors name here")
        raw = _tensor_bytes(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_file(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    Path(path).write_bytes(dumps(tensors, metadata))


#: Keys real files carry that current module definitions do not: transformers' position_ids
#: buffers (persistent before 4.31). Dropped on load, and listed in the report.
IGNORED_KEYS = re.compile(r"(^|\.)embeddings\.position_ids$")

#: diffusers < 0.14 named the VAE mid-block attention's layers differently; diffusers renames them
#: on load (``_convert_deprecated_attention_blocks``), and so does this loader.
LEGACY_VAE_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_LEGACY = re.compile(r"^(.*\.mid_block\.attentions\.0)\.(query|key|value|proj_attn)\.(weight|bias)$")


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "name: file [..] vs module [..]"
    ignored: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)  # "old -> new"
    defaulted: list[str] = field(default_factory=list)  # absent BatchNorm counters torch fills with 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 20) -> str:
        parts = []
        for label, names in (("missing", self.missing), ("unexpected", self.unexpected), ("shape mismatch", self.mismatched)):
            if names:
                shown = ", ".join(names[:limit]) + (f", … ({len(names) - limit} more)" if len(names) > limit else "")
                parts.append(f"{len(names)} {label}: {shown}")
        return "; ".join(parts) or "all keys match"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a .safetensors file or a torch .bin/.pt/.ckpt (unwrapping ``state_dict``)."""
    path = str(path)
    if path.endswith(".safetensors"):
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ValueError(f"{path}: not a flat state dict of tensors")
    return state


def load_diffusers_state_dict(module: nn.Module, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Loads a diffusers/transformers/InsightFace state dict file into ``module`` and reports on the keys.

    Drops ``IGNORED_KEYS`` and renames legacy VAE attention keys first (both listed in the
    report); an absent BatchNorm ``num_batches_tracked`` is not an error (listed as defaulted). With ``strict`` any missing, unexpected or mis-shaped key raises a ValueError naming
    them and nothing is loaded; without it the matching keys load and the report names the rest.
    Values are cast to the module's dtypes (a float16 file fills a float32 module).
    """
    state = read_state_dict(path)
    report = LoadReport()
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if IGNORED_KEYS.search(key):
            report.ignored.append(key)
            continue
        m = _LEGACY.match(key)
        if m:
            new = f"{m.group(1)}.{LEGACY_VAE_ATTENTION[m.group(2)]}.{m.group(3)}"
            report.renamed.append(f"{key} -> {new}")
            # The old attention stored 1x1-conv-shaped [C, C, 1, 1] weights in some files.
            value = value.reshape(value.shape[:2]) if value.dim() == 4 else value
            key = new
        cleaned[key] = value
    own = module.state_dict()
    absent = sorted(k for k in own if k not in cleaned)
    # torch's BatchNorm fills an absent num_batches_tracked itself (files saved before torch 0.4.1);
    # inference never reads it.
    report.defaulted = [k for k in absent if k.endswith(".num_batches_tracked")]
    report.missing = [k for k in absent if not k.endswith(".num_batches_tracked")]
    report.unexpected = sorted(k for k in cleaned if k not in own)
    report.mismatched = sorted(f"{k}: file {list(v.shape)} vs module {list(own[k].shape)}" for k, v in cleaned.items() if k in own and v.shape != own[k].shape)
    if strict and not report.ok:
        raise ValueError(f"{path}: does not match {type(module).__name__}: {report.describe()}")
    loadable = {k: v for k, v in cleaned.items() if k in own and v.shape == own[k].shape}
    module.load_state_dict(loadable, strict=strict)
    return report
