"""Runs one model of a build_full export in torch, for parity checks against the served graphs.

    python3 -m diffid_reference.full_reference --build EXPORT_DIR/diffid/build.json unet \\
        --inputs FEEDS.json --out OUT.f32

The model is rebuilt from build.json's scale, seed and widths (seeded_init makes the same
weights on every run) and the state dict files it loaded, if any, in float32 whatever the export's precision. FEEDS.json maps each input
port to ``{"file": raw little-endian data, "dtype": "float32" | "int32", "shape": [...]}`` (file
paths relative to FEEDS.json); the output goes to OUT as raw float32, and stdout gets
``{"output": name, "shape": [...], "forward_ms": [...]}``.

``--repeat N`` runs the forward pass N times (the first is the output) and times each, eager and
under ``torch.no_grad`` as diffusers runs its pipelines; ``--threads N`` sets torch's threads
(``npm run bench -- --full`` gives it the worker's onnxruntime threads); ``--device cuda`` runs it
on the GPU (in float32).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .build_full import MODELS, Widths, build_module

DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64}


def run(build: dict, name: str, feeds: dict[str, np.ndarray], repeat: int = 1, device: str = "cpu") -> tuple[np.ndarray, list[float]]:
    """The model's output on ``feeds``, and the milliseconds of each of ``repeat`` forward passes
    on ``device`` (a CUDA pass is timed to its end: the device is synchronised)."""
    face_dim = None if build["embedder"] == "iresnet100" else build["widths"]["face_embedding"]
    widths = Widths.of(build["scale"], face_dim)
    module = build_module(name, widths, build["seed"], build.get("weights")).to(device)
    inputs = [torch.from_numpy(np.ascontiguousarray(v)).to(device) for v in feeds.values()]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: list[float] = []
    out = None
    with torch.no_grad():
        for _ in range(max(1, repeat)):
            sync()
            t0 = time.perf_counter()
            result = module(*inputs)
            sync()
            times.append((time.perf_counter() - t0) * 1000)
            if out is None:
                out = result
    return out.float().cpu().numpy(), times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m diffid_reference.full_reference", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="the export's diffid/build.json")
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--inputs", required=True, help="JSON: port -> {file, dtype, shape}, in the graph's input order")
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeat", type=int, default=1, help="forward passes to time; default 1")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads; default torch's own")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    build = json.loads(Path(args.build).read_text())
    spec_path = Path(args.inputs)
    spec = json.loads(spec_path.read_text())
    feeds = {port: np.fromfile(spec_path.parent / s["file"], dtype=DTYPES[s["dtype"]]).reshape(s["shape"]) for port, s in spec.items()}
    out, times = run(build, args.model, feeds, args.repeat, args.device)
    out.astype("<f4").tofile(args.out)
    print(json.dumps({"output": MODELS[args.model][1][0], "shape": list(out.shape), "forward_ms": times, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
