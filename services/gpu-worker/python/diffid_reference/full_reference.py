"""Runs one model of a build_full export in torch, for parity checks against the served graphs.

    python3 -m diffid_reference.full_reference --build EXPORT_DIR/diffid/build.json unet \\
        --inputs FEEDS.json --out OUT.f32

The model is rebuilt from build.json's scale, seed and widths (seeded_init makes the same
weights on every run), in float32 whatever the export's precision. FEEDS.json maps each input
port to ``{"file": raw little-endian data, "dtype": "float32" | "int32", "shape": [...]}`` (file
paths relative to FEEDS.json); the output goes to OUT as raw float32, and stdout gets
``{"output": name, "shape": [...]}``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .build_full import MODELS, Widths, build_module

DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64}


def run(build: dict, name: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    face_dim = None if build["embedder"] == "iresnet100" else build["widths"]["face_embedding"]
    widths = Widths.of(build["scale"], face_dim)
    module = build_module(name, widths, build["seed"])
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()))
    return out.float().numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m diffid_reference.full_reference", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="the export's diffid/build.json")
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--inputs", required=True, help="JSON: port -> {file, dtype, shape}, in the graph's input order")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    build = json.loads(Path(args.build).read_text())
    spec_path = Path(args.inputs)
    spec = json.loads(spec_path.read_text())
    feeds = {port: np.fromfile(spec_path.parent / s["file"], dtype=DTYPES[s["dtype"]]).reshape(s["shape"]) for port, s in spec.items()}
    out = run(build, args.model, feeds)
    out.astype("<f4").tofile(args.out)
    print(json.dumps({"output": MODELS[args.model][1][0], "shape": list(out.shape)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
