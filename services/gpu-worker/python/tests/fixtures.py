"""Checkpoints with seeded weights in the layouts real ones have, for the parity tests.

    python3 -m tests.fixtures ip-checkpoint --face-dim 16 --width 32 --seed 3 --out DIR

writes DIR/ip-adapter-faceid.bin (IP-Adapter's {"image_proj": ..., "ip_adapter": ...} layout)
and DIR/image_proj.json (the same weights as {name: {"shape": [...], "data": [...]}}), so that
the TypeScript test can evaluate the projection on its own.
"""
import argparse
import json
from pathlib import Path

import torch

from diffid_reference.ip_adapter_faceid import FaceIdProjection


def ip_checkpoint(face_dim: int, width: int, seed: int, out: Path) -> None:
    torch.manual_seed(seed)
    projection = FaceIdProjection(face_dim, width)
    with torch.no_grad():
        projection.norm.weight.uniform_(0.5, 1.5)
        projection.norm.bias.normal_(0, 0.1)
    state = projection.state_dict()
    out.mkdir(parents=True, exist_ok=True)
    # The U-Net half ("ip_adapter") is not the adapter graph's concern; an empty dict keeps the layout.
    torch.save({"image_proj": state, "ip_adapter": {}}, out / "ip-adapter-faceid.bin")
    weights = {k: {"shape": list(v.shape), "data": v.flatten().tolist()} for k, v in state.items()}
    (out / "image_proj.json").write_text(json.dumps(weights))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["ip-checkpoint"])
    parser.add_argument("--face-dim", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", required=True)
    a = parser.parse_args()
    ip_checkpoint(a.face_dim, a.width, a.seed, Path(a.out))
