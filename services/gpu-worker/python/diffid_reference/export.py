"""Writes an adapter as the ONNX graph Diff-ID Serve's bundle contract expects.

    python3 -m diffid_reference.export diff-id --weights adapter.pt --out adapter.onnx
    python3 -m diffid_reference.export diff-id --from-service-graph tiny/adapter.onnx --out adapter.onnx
    python3 -m diffid_reference.export ip-adapter-faceid --checkpoint ip-adapter-faceid_sd15.bin --out adapter.onnx

The graph has the adapter role's ports (docs/bundle-contract.md): inputs face_embedding [B, D],
image_embedding [B, E], text_embedding [B, L, W]; output conditioning [B, N, C]; batch dynamic.
Beside it goes ``<out>.json``, the manifest's ``adapter`` object, which
``npm run bundle -- --kind import --adapter <out>`` reads.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from .adapter import DiffIdAdapter, AdapterShape, from_ts_graph
from .ip_adapter_faceid import load_checkpoint

#: torch 1.13 (Debian 12's python3-torch) exports up to opset 17; onnxruntime-node runs it.
OPSET = 17
PORTS = ("face_embedding", "image_embedding", "text_embedding")


def diff_id_from_state_dict(path: str, text_tokens: int) -> DiffIdAdapter:
    state = torch.load(path, map_location="cpu")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        shape = AdapterShape(
            face_dim=state["proj_arc.weight"].shape[1],
            image_dim=state["proj_image.weight"].shape[1],
            text_width=state["shared.weight"].shape[0],
            text_tokens=text_tokens,
            attention_width=state["identity.q.weight"].shape[0],
            mlp_hidden=state["mlp.0.weight"].shape[0],
            conditioning_width=state["mlp.2.weight"].shape[0],
        )
    except KeyError as err:
        raise SystemExit(f"{path}: no {err} in the state_dict; the layout is documented in diffid_reference/adapter.py")
    module = DiffIdAdapter(shape)
    module.load_state_dict(state)
    return module


def export(module: torch.nn.Module, dims: tuple[int, int, int, int], conditioning: tuple[int, int], out: Path) -> None:
    """dims: (D, E, L, W) of the inputs, conditioning: (N, C); only the batch axis is symbolic."""
    import onnx
    from onnx import TensorProto, helper

    face_dim, image_dim, text_tokens, text_width = dims
    example = (torch.zeros(2, face_dim), torch.zeros(2, image_dim), torch.zeros(2, text_tokens, text_width))
    module.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module,
        example,
        str(out),
        input_names=list(PORTS),
        output_names=["conditioning"],
        dynamic_axes={name: {0: "batch"} for name in (*PORTS, "conditioning")},
        opset_version=OPSET,
        do_constant_folding=True,
    )
    model = onnx.load(str(out))
    # torch drops inputs a module ignores; the contract needs every port, used or not.
    present = {i.name for i in model.graph.input}
    shapes = {"face_embedding": ["batch", face_dim], "image_embedding": ["batch", image_dim], "text_embedding": ["batch", text_tokens, text_width]}
    for position, name in enumerate(PORTS):
        if name not in present:
            model.graph.input.insert(position, helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name]))
    # torch names the output's token axis symbolically after a Concat; the contract fixes it.
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    for axis, size in zip((1, 2), conditioning):
        out_dims[axis].Clear()
        out_dims[axis].dim_value = size
    model.doc_string = f"{type(module).__name__} exported by diffid_reference.export"
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m diffid_reference.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    d = sub.add_parser("diff-id", help="the Diff-ID adapter (paper eqs. 5-15)")
    source = d.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="a torch.save'd state_dict in the layout of diffid_reference/adapter.py")
    source.add_argument("--from-service-graph", help="an adapter.onnx the service built (tiny bundle): its weights")
    ip = sub.add_parser("ip-adapter-faceid", help="IP-Adapter-FaceID's projection (4 identity tokens after the text)")
    ip.add_argument("--checkpoint", required=True, help="ip-adapter-faceid_sd15.bin (or .safetensors)")
    ip.add_argument("--image-dim", type=int, default=768, help="the bundle's CLIP image-embedding width E (the port is unused); default 768")
    for p in (d, ip):
        p.add_argument("--text-tokens", type=int, default=77, help="the text encoder's sequence length L; default 77")
        p.add_argument("--out", required=True, help="where to write the graph; <out>.json gets the manifest's adapter object")
    args = parser.parse_args(argv)
    out = Path(args.out)

    if args.kind == "diff-id":
        module = from_ts_graph(args.from_service_graph) if args.from_service_graph else diff_id_from_state_dict(args.weights, args.text_tokens)
        s = module.shape
        dims = (s.face_dim, s.image_dim, s.text_tokens, s.text_width)
    else:
        module = load_checkpoint(args.checkpoint, args.text_tokens)
        p = module.projection
        dims = (p.face_dim, args.image_dim, args.text_tokens, p.width)
    spec = module.manifest_adapter()
    with torch.no_grad(), warnings.catch_warnings():
        # torch 1.13 warns about shape inference of constants it then exports correctly.
        warnings.simplefilter("ignore", UserWarning)
        export(module, dims, (spec["conditioning_tokens"], spec["conditioning_width"]), out)
    sidecar = out.with_suffix(".json")
    sidecar.write_text(json.dumps(spec, indent=2) + "\n")
    print(json.dumps({"graph": str(out), "adapter": spec}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
