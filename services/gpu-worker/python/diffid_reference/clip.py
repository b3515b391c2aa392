"""CLIP's text and vision towers in plain torch, with transformers' parameter names.

``CLIPTextModel`` loads SD 1.5's ``text_encoder/model.safetensors`` and ``CLIPVisionModelWithProjection``
loads an image encoder saved by transformers (``openai/clip-vit-large-patch14``'s vision half, or
IP-Adapter's OpenCLIP ViT-H/14 ``models/image_encoder``) with ``load_state_dict(strict=True)``.
``position_ids`` is a non-persistent buffer, as in transformers >= 4.31; older files that still
carry ``*.embeddings.position_ids`` load through ``safetensors_io.load_diffusers_state_dict``,
which drops that key and says so.

Text tower (``text_model.``): embeddings.token_embedding [49408, W], embeddings.position_embedding
[77, W], encoder.layers.{i} (layer_norm1, self_attn.{q,k,v,out}_proj with biases, layer_norm2,
mlp.fc1, mlp.fc2), final_layer_norm. Pre-norm residual layers, causal mask, LayerNorm eps 1e-5.
Output: ``last_hidden_state`` [B, 77, W] after the final layer norm (what SD 1.5 conditions on).

Vision tower (``vision_model.``): embeddings.class_embedding [W], embeddings.patch_embedding
(conv 14x14 stride 14, no bias), embeddings.position_embedding [(224/14)^2 + 1, W], pre_layrnorm
(transformers' spelling), encoder.layers as above without a mask, post_layernorm on the class
token; ``visual_projection`` (no bias) -> ``image_embeds`` [B, P].

Configs: ``ClipTextConfig.vit_l14``, ``ClipVisionConfig.vit_l14`` (OpenAI, quick_gelu) and
``ClipVisionConfig.vit_h14`` (OpenCLIP, exact GELU: ``hidden_act`` is part of the config).
``scale`` keeps heads and depth and scales head widths (scaling.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .scaling import head_width, plain_width
from .sd_unet import Device


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's x·sigmoid(1.702 x) (transformers' ``quick_gelu``)."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": F.gelu}


@dataclass(frozen=True)
class ClipTextConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    vocab_size: int = 49408
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    @classmethod
    def vit_l14(cls, scale: float = 1.0) -> "ClipTextConfig":
        """SD 1.5's text encoder (openai/clip-vit-large-patch14's text half); vocabulary and positions never scale."""
        return cls(hidden_size=12 * head_width(64, scale), intermediate_size=plain_width(3072, scale))

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClipVisionConfig:
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    projection_dim: int = 768
    image_size: int = 224
    patch_size: int = 14
    num_channels: int = 3
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    @classmethod
    def vit_l14(cls, scale: float = 1.0) -> "ClipVisionConfig":
        """openai/clip-vit-large-patch14's vision tower with its 768-d projection."""
        return cls(hidden_size=16 * head_width(64, scale), intermediate_size=plain_width(4096, scale), projection_dim=plain_width(768, scale))

    @classmethod
    def vit_h14(cls, scale: float = 1.0) -> "ClipVisionConfig":
        """OpenCLIP ViT-H/14 (laion2b) as IP-Adapter ships it: 32 layers, width 1280, exact GELU, 1024-d projection."""
        return cls(
            hidden_size=16 * head_width(80, scale),
            intermediate_size=plain_width(5120, scale),
            num_hidden_layers=32,
            num_attention_heads=16,
            projection_dim=plain_width(1024, scale),
            hidden_act="gelu",
        )

    def to_json(self) -> dict:
        return asdict(self)


class ClipAttention(nn.Module):
    def __init__(self, width: int, heads: int, device: Device = None):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} does not split into {heads} heads")
        self.heads = heads
        self.head_dim = width // heads
        self.k_proj = nn.Linear(width, width, device=device)
        self.v_proj = nn.Linear(width, width, device=device)
        self.q_proj = nn.Linear(width, width, device=device)
        self.out_proj = nn.Linear(width, width, device=device)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, w = x.shape
        h, d = self.heads, self.head_dim
        q = (self.q_proj(x) * d ** -0.5).reshape(b, n, h, d).transpose(1, 2)
        k = self.k_proj(x).reshape(b, n, h, d).transpose(1, 2)
        v = self.v_proj(x).reshape(b, n, h, d).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2))
        if mask is not None:
            scores = scores + mask
        out = torch.matmul(scores.softmax(dim=-1), v).transpose(1, 2).reshape(b, n, w)
        return self.out_proj(out)


class ClipMlp(nn.Module):
    def __init__(self, width: int, hidden: int, act: str, device: Device = None):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {act!r}: expected one of {sorted(ACTIVATIONS)}")
        self.act = ACTIVATIONS[act]
        self.fc1 = nn.Linear(width, hidden, device=device)
        self.fc2 = nn.Linear(hidden, width, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ClipEncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, act: str, eps: float, device: Device = None):
        super().__init__()
        self.self_attn = ClipAttention(width, heads, device=device)
        self.layer_norm1 = nn.LayerNorm(width, eps=eps, device=device)
        self.mlp = ClipMlp(width, hidden, act, device=device)
        self.layer_norm2 = nn.LayerNorm(width, eps=eps, device=device)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nn.Module):
    def __init__(self, layers: int, width: int, heads: int, hidden: int, act: str, eps: float, device: Device = None):
        super().__init__()
        self.layers = nn.ModuleList([ClipEncoderLayer(width, heads, hidden, act, eps, device=device) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class ClipTextEmbeddings(nn.Module):
    def __init__(self, cfg: ClipTextConfig, device: Device = None):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size, device=device)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size, device=device)
        self.register_buffer("position_ids", torch.arange(cfg.max_position_embeddings, device=device).unsqueeze(0), persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[-1]
        return self.token_embedding(input_ids) + self.position_embedding(self.position_ids[:, :n])


class ClipTextTransformer(nn.Module):
    def __init__(self, cfg: ClipTextConfig, device: Device = None):
        super().__init__()
        self.embeddings = ClipTextEmbeddings(cfg, device=device)
        self.encoder = ClipEncoder(cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.hidden_act, cfg.layer_norm_eps, device=device)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, device=device)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        n = x.shape[1]
        # Causal mask as transformers builds it: the dtype's lowest value above the diagonal (not
        # -inf, which turns a fully masked row into NaN in exported graphs).
        mask = torch.full((n, n), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device).triu(1)
        return self.final_layer_norm(self.encoder(x, mask[None, None]))


class CLIPTextModel(nn.Module):
    """input_ids [B, 77] (int32 or int64) -> last_hidden_state [B, 77, W]."""

    def __init__(self, config: ClipTextConfig | None = None, device: Device = None):
        super().__init__()
        self.config = config or ClipTextConfig()
        self.text_model = ClipTextTransformer(self.config, device=device)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_model(input_ids)


class ClipVisionEmbeddings(nn.Module):
    def __init__(self, cfg: ClipVisionConfig, device: Device = None):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        positions = (cfg.image_size // cfg.patch_size) ** 2 + 1
        self.class_embedding = nn.Parameter(torch.empty(cfg.hidden_size, device=device))
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size, cfg.patch_size, stride=cfg.patch_size, bias=False, device=device)
        self.position_embedding = nn.Embedding(positions, cfg.hidden_size, device=device)
        self.register_buffer("position_ids", torch.arange(positions, device=device).unsqueeze(0), persistent=False)
        nn.init.normal_(self.class_embedding)  # as transformers (torch.randn); torch.empty alone is uninitialised memory

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b = pixels.shape[0]
        patches = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # [B, (S/14)^2, W]
        cls = self.class_embedding.to(patches.dtype).expand(b, 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding(self.position_ids)


class ClipVisionTransformer(nn.Module):
    def __init__(self, cfg: ClipVisionConfig, device: Device = None):
        super().__init__()
        self.embeddings = ClipVisionEmbeddings(cfg, device=device)
        self.pre_layrnorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, device=device)
        self.encoder = ClipEncoder(cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.hidden_act, cfg.layer_norm_eps, device=device)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, device=device)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """-> the pooled output: post_layernorm of the class token [B, W]."""
        x = self.encoder(self.pre_layrnorm(self.embeddings(pixels)))
        return self.post_layernorm(x[:, 0])


class CLIPVisionModelWithProjection(nn.Module):
    """pixels [B, 3, 224, 224] (CLIP-normalised, inference-facts.md) -> image_embeds [B, P]."""

    def __init__(self, config: ClipVisionConfig | None = None, device: Device = None):
        super().__init__()
        self.config = config or ClipVisionConfig()
        self.vision_model = ClipVisionTransformer(self.config, device=device)
        self.visual_projection = nn.Linear(self.config.hidden_size, self.config.projection_dim, bias=False, device=device)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixels))
