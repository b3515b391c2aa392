"""The Diff-ID adapter, paper section 3.2 and appendix A.1 (eqs. 5-15).

The tensor shapes the paper leaves open are the ones docs/adapter.md decides; each is named where
it is applied. Row vectors throughout: a ``torch.nn.Linear`` computes ``x @ weight.T``, so its
``weight`` is the paper's matrix W with shape [out, in].

state_dict layout (D face-embedding width, E CLIP image-embedding width, W text width,
d attention width, h MLP hidden width, C conditioning width):

==============================  ========  ====================================
key                             shape     paper
==============================  ========  ====================================
proj_arc.weight                 [W, D]    W_arc (eq. 5)
proj_image.weight               [W, E]    W_i (eq. 5)
shared.weight                   [W, W]    W_s (eq. 7), applied to e_id and e_t
identity.q.weight               [d, W]    W_q^id (eq. 9)
identity.k.weight               [d, W]    W_k^id (eq. 9)
identity.v.weight               [d, W]    W_v^id (eq. 9)
attribute.q.weight              [d, W]    W_q^attr (eq. 11)
attribute.k.weight              [d, W]    W_k^attr (eq. 11)
attribute.v.weight              [d, W]    W_v^attr (eq. 11)
mlp.0.weight, mlp.0.bias        [h, d]    W_1, b_1 (eqs. 14-15)
mlp.2.weight, mlp.2.bias        [C, h]    W_2, b_2 (eqs. 14-15)
==============================  ========  ====================================
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

#: Tokens of e_id (eq. 6): e'_arc, e'_i, e_max, e_avg.
IDENTITY_TOKENS = 4


@dataclass(frozen=True)
class AdapterShape:
    face_dim: int  # D
    image_dim: int  # E
    text_width: int  # W
    text_tokens: int  # L
    attention_width: int  # d
    mlp_hidden: int  # h
    conditioning_width: int  # C

    @property
    def conditioning_tokens(self) -> int:
        return IDENTITY_TOKENS + self.text_tokens

    def to_json(self) -> dict:
        return asdict(self)


class DualAttention(nn.Module):
    """e = (Q K^T / sqrt(d)) V with no softmax (eq. 8); Q from one sequence, K and V from the other."""

    def __init__(self, width: int, attention_width: int):
        super().__init__()
        self.q = nn.Linear(width, attention_width, bias=False)
        self.k = nn.Linear(width, attention_width, bias=False)
        self.v = nn.Linear(width, attention_width, bias=False)
        self.scale = 1.0 / math.sqrt(attention_width)

    def forward(self, queries: torch.Tensor, keys_values: torch.Tensor) -> torch.Tensor:
        scores = self.q(queries) @ self.k(keys_values).transpose(1, 2) * self.scale
        return scores @ self.v(keys_values)


class DiffIdAdapter(nn.Module):
    """(face_embedding [B, D], image_embedding [B, E], text_embedding [B, L, W]) -> [B, 4 + L, C]."""

    def __init__(self, shape: AdapterShape):
        super().__init__()
        self.shape = shape
        W, d = shape.text_width, shape.attention_width
        # (5) Both modalities project to the text width so that one W_s serves e_id and e_t.
        self.proj_arc = nn.Linear(shape.face_dim, W, bias=False)
        self.proj_image = nn.Linear(shape.image_dim, W, bias=False)
        self.shared = nn.Linear(W, W, bias=False)  # (7)
        self.identity = DualAttention(W, d)  # (9-10)
        self.attribute = DualAttention(W, d)  # (11-12)
        self.mlp = nn.Sequential(  # (14-15), applied per token
            nn.Linear(d, shape.mlp_hidden),
            nn.ReLU(),
            nn.Linear(shape.mlp_hidden, shape.conditioning_width),
            nn.ReLU(),
        )

    def forward(self, face_embedding: torch.Tensor, image_embedding: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        arc = self.proj_arc(face_embedding).unsqueeze(1)  # e'_arc as one token
        img = self.proj_image(image_embedding).unsqueeze(1)  # e'_i as one token
        e_img = torch.cat([arc, img], dim=1)
        # (6) Pooled over the two modality tokens, per feature.
        e_max = e_img.amax(dim=1, keepdim=True)
        e_avg = e_img.mean(dim=1, keepdim=True)
        e_id = torch.cat([arc, img, e_max, e_avg], dim=1)
        id_tilde = self.shared(e_id)  # (7)
        text_tilde = self.shared(text_embedding)
        e_identity = self.identity(id_tilde, text_tilde)  # (9-10): ẽ_id queries ẽ_t
        e_attribute = self.attribute(text_tilde, id_tilde)  # (11-12): ẽ_t queries ẽ_id
        fused = torch.cat([e_identity, e_attribute], dim=1)  # (13) along the token axis, identity first
        return self.mlp(fused)

    def manifest_adapter(self) -> dict:
        """The bundle manifest's ``adapter`` object for this module (docs/bundle-contract.md)."""
        return {
            "architecture": "diff-id",
            "identity_tokens": IDENTITY_TOKENS,
            "text_tokens": self.shape.text_tokens,
            "pooling": "over_modalities",
            "fused_sequence": ["identity", "attribute"],
            "conditioning_tokens": self.shape.conditioning_tokens,
            "conditioning_width": self.shape.conditioning_width,
        }


#: The service's TypeScript-built adapter graph (services/gpu-worker/src/bundles/tiny-graphs.ts,
#: ``adapterGraph``) names its initializers as below and stores matrices as [in, out].
TS_GRAPH_INITIALIZERS = {
    "proj_arc.weight": "W_arc",
    "proj_image.weight": "W_i",
    "shared.weight": "W_s",
    "identity.q.weight": "W_q_id",
    "identity.k.weight": "W_k_id",
    "identity.v.weight": "W_v_id",
    "attribute.q.weight": "W_q_attr",
    "attribute.k.weight": "W_k_attr",
    "attribute.v.weight": "W_v_attr",
    "mlp.0.weight": "mlp.0.weight",
    "mlp.0.bias": "mlp.0.bias",
    "mlp.2.weight": "mlp.2.weight",
    "mlp.2.bias": "mlp.2.bias",
}


def from_ts_graph(path: str) -> DiffIdAdapter:
    """A module holding the weights of an adapter graph the service built (for parity checks)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dims = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    missing = [name for name in TS_GRAPH_INITIALIZERS.values() if name not in arrays]
    if missing:
        raise ValueError(f"{path}: not an adapter graph built by the service; no initializer {', '.join(missing)}")
    shape = AdapterShape(
        face_dim=arrays["W_arc"].shape[0],
        image_dim=arrays["W_i"].shape[0],
        text_width=arrays["W_s"].shape[0],
        text_tokens=int(dims["text_embedding"][1]),
        attention_width=arrays["W_q_id"].shape[1],
        mlp_hidden=arrays["mlp.0.weight"].shape[1],
        conditioning_width=arrays["mlp.2.weight"].shape[1],
    )
    module = DiffIdAdapter(shape)
    state = {}
    for key, name in TS_GRAPH_INITIALIZERS.items():
        value = torch.from_numpy(arrays[name].copy())
        state[key] = value.T.contiguous() if key.endswith("weight") else value
    module.load_state_dict(state)
    return module
