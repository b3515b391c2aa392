"""IP-Adapter-FaceID's identity projection as an adapter of this service's contract.

IP-Adapter-FaceID (tencent-ailab/IP-Adapter, SD 1.5 checkpoint ``ip-adapter-faceid_sd15.bin``)
projects the L2-normalised 512-d ArcFace embedding to ``num_tokens`` = 4 tokens of the U-Net's
cross-attention width, and its pipeline appends them to the text tokens:
``encoder_hidden_states = [text (L tokens); identity (4 tokens)]``. The U-Net's decoupled
cross-attention splits that sequence again, so the U-Net must be exported with IP-Adapter's
attention processors in place (docs/exporting-adapters.md).

As an adapter graph: (face_embedding [B, D], image_embedding [B, E] unused, text_embedding
[B, L, C]) -> conditioning [B, L + 4, C]. The zero face the service passes for the unconditional
branch stays zero through the normalisation, so the unconditional tokens are proj(0) exactly as
IP-Adapter's own pipeline computes them.

state_dict layout (the checkpoint's ``image_proj`` entry):

=====================  ==============  ==========================================
key                    shape           role
=====================  ==============  ==========================================
proj.0.weight, .bias   [2D, D], [2D]   first linear layer
proj.2.weight, .bias   [4C, 2D], [4C]  second linear layer (after an exact GELU)
norm.weight, .bias     [C], [C]        LayerNorm over each token (eps 1e-5)
=====================  ==============  ==========================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_TOKENS = 4
#: Zero embeddings stay zero instead of dividing by zero.
NORM_EPS = 1e-12


class FaceIdProjection(nn.Module):
    def __init__(self, face_dim: int = 512, width: int = 768, num_tokens: int = NUM_TOKENS):
        super().__init__()
        self.face_dim, self.width, self.num_tokens = face_dim, width, num_tokens
        self.proj = nn.Sequential(nn.Linear(face_dim, 2 * face_dim), nn.GELU(), nn.Linear(2 * face_dim, width * num_tokens))
        self.norm = nn.LayerNorm(width)

    def forward(self, face_embedding: torch.Tensor) -> torch.Tensor:
        x = self.proj(face_embedding)
        return self.norm(x.reshape(-1, self.num_tokens, self.width))


class IpAdapterFaceIdAdapter(nn.Module):
    def __init__(self, projection: FaceIdProjection, text_tokens: int):
        super().__init__()
        self.projection = projection
        self.text_tokens = text_tokens

    def forward(self, face_embedding: torch.Tensor, image_embedding: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        del image_embedding  # the contract's port; FaceID (not FaceID-Plus) has no CLIP input
        normed = F.normalize(face_embedding, dim=-1, eps=NORM_EPS)
        return torch.cat([text_embedding, self.projection(normed)], dim=1)

    def manifest_adapter(self) -> dict:
        p = self.projection
        return {
            "architecture": "ip-adapter-faceid",
            "identity_tokens": p.num_tokens,
            "text_tokens": self.text_tokens,
            "fused_sequence": ["attribute", "identity"],
            "conditioning_tokens": self.text_tokens + p.num_tokens,
            "conditioning_width": p.width,
        }


def load_checkpoint(path: str, text_tokens: int = 77) -> IpAdapterFaceIdAdapter:
    """Reads the projection from an IP-Adapter-FaceID checkpoint (``.bin`` or ``.safetensors``)."""
    if path.endswith(".safetensors"):
        from .safetensors_io import load_file  # standard library + torch; no safetensors package needed

        flat = load_file(path)
        image_proj = {k[len("image_proj."):]: v for k, v in flat.items() if k.startswith("image_proj.")}
    else:
        checkpoint = torch.load(path, map_location="cpu")
        if not isinstance(checkpoint, dict) or "image_proj" not in checkpoint:
            raise ValueError(f"{path}: not an IP-Adapter checkpoint (no 'image_proj' entry)")
        image_proj = checkpoint["image_proj"]
    first = image_proj.get("proj.0.weight")
    norm = image_proj.get("norm.weight")
    if first is None or norm is None:
        raise ValueError(f"{path}: image_proj has no proj.0.weight / norm.weight; keys are {sorted(image_proj)}")
    face_dim, width = first.shape[1], norm.shape[0]
    num_tokens = image_proj["proj.2.weight"].shape[0] // width
    projection = FaceIdProjection(face_dim, width, num_tokens)
    projection.load_state_dict(image_proj)
    return IpAdapterFaceIdAdapter(projection, text_tokens)
