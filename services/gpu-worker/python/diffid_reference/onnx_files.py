"""ONNX files for graphs of any size: torch's export, then float16 and external data in one pass.

torch 1.13 writes a graph whose weights exceed protobuf's 2 GB limit (SD 1.5's U-Net: 3.44 GB in
float32) with every initializer in a file of its own beside the model. ``write_model`` reads the
exported graph without its weights, then streams the initializers one at a time — each from
wherever the export put it, inline or in its own file — into the form asked for:

* ``external=True``: one side file ``<name>.onnx_data`` beside the graph (diffusers' and optimum's
  layout: ``unet/model.onnx`` naming ``model.onnx_data``), every initializer of at least
  ``EXTERNAL_MIN_BYTES`` at an offset aligned to ``ALIGN`` bytes (as onnx's converter aligns them,
  so that onnxruntime can map them); smaller ones (shapes, scalars) stay inline.
* ``external=False``: every weight inline (graphs under 2 GB; the importer copies such files).

Only one tensor is in memory at a time besides the graph itself, so a 3.4 GB U-Net is never held
twice. With ``precision="fp16"`` the graph is rewritten to compute in float16 (``to_float16``)
and the converted initializers are stored as float16.

float16 (``to_float16``), as fp16 exports of SD 1.5 are (optimum ``--fp16``, diffusers'
``convert_stable_diffusion_checkpoint_to_onnx.py --fp16``): float16 weights, float16 inputs and
outputs, float16 arithmetic — except where float16 is wrong or not allowed:

* the ``fp32_from`` inputs' subgraph up to the first matrix product or convolution stays float32:
  for the U-Net that is ``timestep`` through the sinusoidal embedding, which diffusers computes in
  float32 for fp16 models too (``t · freqs`` for t up to 999 has a float16 spacing of 0.5 —
  sin and cos of it would be noise). The ``timestep`` port itself is float16: DDIM's integer
  timesteps (0…999) are exact there.
* an operator input that ONNX types as float32 only (``Resize``'s ``scales``) or whose type
  constraint excludes float16 (``Range``) keeps its node in float32, with Casts around it.
* float constants are clipped to float16's range (±65504) before rounding: CLIP's causal mask of
  float32's lowest value becomes -65504, float16's lowest, as transformers uses for fp16 models.

onnxruntime's CPU provider runs such graphs (it casts around the few kernels it lacks in
float16); the worker converts at the graph boundary (``onnx.ts``), so its pipeline stays float32.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, defs, helper, numpy_helper

#: torch 1.13 (Debian 12's python3-torch) exports up to opset 17; onnxruntime-node runs it.
OPSET = 17
#: Initializers at least this large go to the side file (onnx's own default threshold).
EXTERNAL_MIN_BYTES = 1024
#: Offsets in the side file are multiples of this (a page), as onnx's converter writes them.
ALIGN = 4096
#: protobuf's limit on one serialized message: graphs above it must keep their weights outside.
PROTOBUF_LIMIT = 2 ** 31 - 1

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
HALF_MAX = float(np.finfo(np.float16).max)
#: Where the float32 subgraph of ``fp32_from`` ends: the first node that mixes in weights.
FP32_STOP = {"MatMul", "Gemm", "Conv"}


class Fp16Error(ValueError):
    """A graph the float16 conversion cannot handle (it names the node)."""


def _half(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -HALF_MAX, HALF_MAX).astype(np.float16)


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    """Every tensor's element type, by ONNX shape inference on the graph without its weights."""
    g = model.graph
    stash: dict[str, bytes] = {}
    # Shape inference needs types, not values: large weights are set aside while it runs (they
    # would be serialized with the model, and a > 2 GB model cannot be).
    for init in g.initializer:
        if len(init.raw_data) >= EXTERNAL_MIN_BYTES:
            stash[init.name] = init.raw_data
            init.ClearField("raw_data")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    finally:
        for init in g.initializer:
            if init.name in stash:
                init.raw_data = stash[init.name]
    types: dict[str, int] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
                elif attr.name in ("value_float", "value_floats"):
                    types[node.output[0]] = FLOAT
    return types


def _formal(schema: defs.OpSchema, side: str, index: int) -> defs.OpSchema.FormalParameter:
    params = schema.inputs if side == "input" else schema.outputs
    if index < len(params):
        return params[index]
    last = params[-1]
    if last.option != defs.OpSchema.FormalParameterOption.Variadic:
        raise Fp16Error(f"{schema.name} has no {side} {index}")
    return last


def _allows_half(schema: defs.OpSchema, side: str, index: int) -> bool:
    formal = _formal(schema, side, index)
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}.get(formal.typeStr, {formal.typeStr})
    return "tensor(float16)" in allowed


def to_float16(model: onnx.ModelProto, fp32_from: tuple[str, ...] = ()) -> set[str]:
    """Rewrites ``model``'s graph (in place) to compute in float16; returns the float initializers
    to store as float16 (the caller converts their data: ``write_model`` streams it).

    Nodes keep their order; Casts go in front of the node that needs them. value_info is dropped
    (onnxruntime infers it again); the graph's float inputs and outputs become float16.
    """
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    types = _element_types(model)
    is_float = lambda name: types.get(name) == FLOAT  # noqa: E731
    graph_inputs = {i.name for i in g.input}
    initializers = {i.name for i in g.initializer}
    graph_outputs = {o.name for o in g.output}
    # Nodes by position: protobuf's Python wrappers are made afresh on each access, so neither
    # they nor their id() can stand for a node across two loops over g.node.
    graph_nodes = list(g.node)
    for node in graph_nodes:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise Fp16Error(f"node {node.name} ({node.op_type}) has a subgraph; the float16 conversion does not handle control flow")
        for name in [*node.input, *node.output]:
            if name and name not in types:
                raise Fp16Error(f"node {node.name} ({node.op_type}): shape inference gave no type for {name!r}")

    # The float32 island: nodes fed (transitively) by the fp32_from inputs, up to the weights.
    island_tensors = set(fp32_from) & graph_inputs
    island: set[int] = set()
    for k, node in enumerate(graph_nodes):
        if node.op_type not in FP32_STOP and any(i in island_tensors for i in node.input):
            island.add(k)
            island_tensors.update(node.output)

    # Each node's arithmetic: float16 unless in the island or ONNX refuses float16 at a float port.
    half_node: dict[int, bool] = {}
    consumers: dict[str, list[int]] = defaultdict(list)
    producer: dict[str, int] = {}
    for k, node in enumerate(graph_nodes):
        for name in node.input:
            if name:
                consumers[name].append(k)
        for name in node.output:
            producer[name] = k
        if node.op_type == "Constant":
            continue
        ports = [("input", i) for i, n in enumerate(node.input) if n and is_float(n)] + [("output", i) for i, n in enumerate(node.output) if n and is_float(n)]
        if not ports:
            continue
        schema = defs.get_schema(node.op_type, opset, node.domain)
        half_node[k] = k not in island and all(_allows_half(schema, side, i) for side, i in ports)

    # Constants and float initializers: float16 where any float16 node (or the graph's output) reads them.
    def wanted_half(name: str) -> bool:
        return name in graph_outputs or any(half_node.get(c, False) for c in consumers[name])

    half_source = {name: wanted_half(name) for name in initializers if is_float(name)}
    for node in graph_nodes:
        if node.op_type == "Constant" and is_float(node.output[0]):
            half_source[node.output[0]] = wanted_half(node.output[0])

    def is_half(name: str) -> bool:
        if name in graph_inputs:
            return True
        if name in half_source:
            return half_source[name]
        return half_node.get(producer[name], False)

    # Outputs computed in float32 (none expected, but possible) are renamed and cast at the end.
    tail: list[onnx.NodeProto] = []
    for out in g.output:
        if is_float(out.name) and not is_half(out.name):
            inner = f"{out.name}__fp32"
            types[inner] = FLOAT
            k = producer[out.name]
            node = graph_nodes[k]
            node.output[:] = [inner if n == out.name else n for n in node.output]
            for c in consumers[out.name]:
                graph_nodes[c].input[:] = [inner if n == out.name else n for n in graph_nodes[c].input]
            producer[inner] = k
            tail.append(helper.make_node("Cast", [inner], [out.name], to=FLOAT16, name=f"fp16_cast_{out.name}"))

    nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, bool], str] = {}

    def cast(name: str, to_half: bool) -> str:
        key = (name, to_half)
        if key not in casts:
            out = f"{name}__{'fp16' if to_half else 'fp32'}"
            nodes.append(helper.make_node("Cast", [name], [out], to=FLOAT16 if to_half else FLOAT, name=f"fp16_cast_{out}"))
            casts[key] = out
        return casts[key]

    for k, node in enumerate(graph_nodes):
        if node.op_type == "Constant":
            if half_source.get(node.output[0]):
                _constant_to_half(node)
            nodes.append(node)
            continue
        want = half_node.get(k)
        if want is not None:
            for i, name in enumerate(node.input):
                if name and is_float(name) and is_half(name) != want:
                    node.input[i] = cast(name, want)
            if want:
                for attr in node.attribute:
                    if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                        attr.i = FLOAT16
                    elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT:
                        attr.t.CopyFrom(numpy_helper.from_array(_half(numpy_helper.to_array(attr.t)), attr.t.name))
        nodes.append(node)
    # Copies, before the repeated field they come from is cleared.
    nodes = [_copy(n) for n in nodes]
    g.ClearField("node")
    g.node.extend(nodes + tail)
    g.ClearField("value_info")
    for vi in [*g.input, *g.output]:
        if vi.type.tensor_type.elem_type == FLOAT:
            vi.type.tensor_type.elem_type = FLOAT16
    return {name for name, half in half_source.items() if half and name in initializers}


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    fresh = onnx.NodeProto()
    fresh.CopyFrom(node)
    return fresh


def _constant_to_half(node: onnx.NodeProto) -> None:
    for attr in list(node.attribute):
        if attr.name == "value":
            attr.t.CopyFrom(numpy_helper.from_array(_half(numpy_helper.to_array(attr.t)), attr.t.name))
        elif attr.name in ("value_float", "value_floats"):
            values = np.array(attr.f if attr.name == "value_float" else list(attr.floats), dtype=np.float32)
            node.attribute.remove(attr)
            node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(_half(values))))


def write_model(source: Path, out: Path, *, precision: str = "fp32", external: bool = False, fp32_from: tuple[str, ...] = (), doc: str = "") -> dict:
    """Rewrites the ONNX graph at ``source`` (weights inline or in files beside it) as ``out``.

    With ``external``, the weights go to ``<out name>_data`` (``model.onnx`` → ``model.onnx_data``).
    Returns {"graph": bytes of the graph file, "data": bytes of the side file or 0}.
    """
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16, not {precision!r}")
    model = onnx.load(str(source), load_external_data=False)
    half = to_float16(model, fp32_from) if precision == "fp16" else set()
    if doc:
        model.doc_string = doc
    out.parent.mkdir(parents=True, exist_ok=True)
    data_name = f"{out.name}_data"
    data_path = out.parent / data_name
    base = str(source.parent)
    offset = 0
    data_file = open(data_path, "wb") if external else None
    try:
        for init in model.graph.initializer:
            # One tensor at a time: read from wherever the export put it, converted, written out.
            array = numpy_helper.to_array(init, base_dir=base)
            if init.name in half:
                array = _half(array)
            fresh = numpy_helper.from_array(array, init.name)
            raw = fresh.raw_data
            init.Clear()
            init.CopyFrom(fresh)
            if data_file is not None and len(raw) >= EXTERNAL_MIN_BYTES:
                pad = -offset % ALIGN
                data_file.write(b"\0" * pad)
                offset += pad
                data_file.write(raw)
                init.ClearField("raw_data")
                init.data_location = TensorProto.EXTERNAL
                for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                    entry = init.external_data.add()
                    entry.key, entry.value = key, value
                offset += len(raw)
            del array, fresh, raw
    finally:
        if data_file is not None:
            data_file.close()
    if model.ByteSize() > PROTOBUF_LIMIT:
        raise ValueError(f"{out}: {model.ByteSize()} bytes inline exceed protobuf's 2 GB limit; write it with external data")
    onnx.save(model, str(out))
    check(out)
    return {"graph": out.stat().st_size, "data": data_path.stat().st_size if external else 0}


def check(path: Path) -> None:
    """onnx's checker on the file (the path form reads graphs whose weights are outside), then
    strict shape inference with type checks — a float16 rewrite that mixes types is refused here,
    not when the worker loads it. (``check_model(path, full_check=True)`` would write the inferred
    graph over the file; the inferred copy goes to a temporary file instead.)"""
    onnx.checker.check_model(str(path))
    fd, inferred = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        onnx.shape_inference.infer_shapes_path(str(path), inferred, check_type=True, strict_mode=True)
    finally:
        os.unlink(inferred)


@contextlib.contextmanager
def _without_graph_shape_inference(enabled: bool = True):
    """Skips torch 1.13's graph-level ONNX shape inference while exporting.

    ``torch.onnx.export`` runs ``_jit_pass_onnx_graph_shape_type_inference`` over the whole graph
    twice (before and after constant folding): two thirds of the export's time for these graphs
    (the 1/16-width U-Net: 19 s of 31 on two busy cores). For every graph build_full writes, the
    result is byte-identical without it except for ``value_info`` (intermediate shapes, which
    onnxruntime infers itself) — tests/test_build_full.py checks that on the VAE encoder. The
    per-node inference the symbolic functions rely on (torch's ``_jit_pass_onnx``) still runs:
    turning all of it off (``onnx_shape_inference=False``) exports F.pad as an invalid graph.
    """
    import torch

    real = torch._C._jit_pass_onnx_graph_shape_type_inference
    if enabled:
        torch._C._jit_pass_onnx_graph_shape_type_inference = lambda *args, **kwargs: None
    try:
        yield
    finally:
        torch._C._jit_pass_onnx_graph_shape_type_inference = real


def torch_export(module, args: tuple, path: str, *, fast: bool = True, **options) -> None:
    """torch.onnx.export at OPSET with constant folding, ``fast``: without the graph-level shape inference."""
    import torch

    module.eval()
    with torch.no_grad(), warnings.catch_warnings(), _without_graph_shape_inference(fast):
        # torch 1.13 warns about traced shape arithmetic and constants it then exports correctly.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, opset_version=OPSET, do_constant_folding=True, **options)


def export_module(module, args: tuple, out: Path, *, input_names: list[str], output_names: list[str], dynamic_axes: dict, precision: str = "fp32", external: bool = False, fp32_from: tuple[str, ...] = (), doc: str = "") -> dict:
    """torch.onnx.export into a temporary folder beside ``out`` (torch puts each weight of a > 2 GB
    graph in a file of its own there), then ``write_model`` into ``out``; the folder is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        torch_export(module, args, str(tmp / "model.onnx"), input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)
        return write_model(tmp / "model.onnx", out, precision=precision, external=external, fp32_from=fp32_from, doc=doc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def graph_io(path: Path) -> dict:
    """{"inputs"|"outputs": [{"name", "dtype", "shape"}]} of a graph file (weights not loaded)."""
    model = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in model.graph.initializer}

    def describe(vi):
        t = vi.type.tensor_type
        return {"name": vi.name, "dtype": TensorProto.DataType.Name(t.elem_type).lower(), "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}

    return {"inputs": [describe(i) for i in model.graph.input if i.name not in init], "outputs": [describe(o) for o in model.graph.output]}
