"""Stable Diffusion 1.5's U-Net in plain torch, with diffusers' module and parameter names.

The attribute paths reproduce diffusers' ``UNet2DConditionModel`` (SD 1.5 config) exactly, so a
diffusers state dict (``unet/diffusion_pytorch_model.safetensors`` or ``.bin``) loads with
``load_state_dict(strict=True)``; see ``safetensors_io.load_diffusers_state_dict``. The original
LDM checkpoint layout (``model.diffusion_model.*``) is a different naming and is not read here.

Structure (diffusers' names; C = block_out_channels = [320, 640, 1280, 1280] at full size):

==========================  =============================================================
conv_in                     Conv2d(4, C0, 3, padding 1)
time_proj                   sinusoids of width C0, flip_sin_to_cos, freq_shift 0 (no weights)
time_embedding              linear_1 (C0 -> 4 C0), SiLU, linear_2 (4 C0 -> 4 C0)
down_blocks.0-2             CrossAttnDownBlock2D: resnets.{0,1}, attentions.{0,1},
                            downsamplers.0.conv (3x3, stride 2, padding 1)
down_blocks.3               DownBlock2D: resnets.{0,1}
mid_block                   UNetMidBlock2DCrossAttn: resnets.0, attentions.0, resnets.1
up_blocks.0                 UpBlock2D: resnets.{0,1,2}, upsamplers.0.conv (nearest x2, 3x3)
up_blocks.1-3               CrossAttnUpBlock2D: resnets.{0,1,2}, attentions.{0,1,2},
                            upsamplers.0.conv except on the last block
conv_norm_out, conv_act,    GroupNorm(32, C0, eps 1e-5), SiLU, Conv2d(C0, 4, 3, padding 1)
conv_out
==========================  =============================================================

A ResnetBlock2D is norm1, conv1, time_emb_proj, norm2, conv2 and, when its channels change
(at full size: ``UNetConfig.shortcut_channels``), a 1x1 conv_shortcut. An attention is a Transformer2DModel: norm (GroupNorm, eps 1e-6 as in
diffusers), proj_in (1x1 conv, SD 1.5 has use_linear_projection false), transformer_blocks.0 (a
BasicTransformerBlock: norm1/attn1 self-attention, norm2/attn2 cross-attention to the encoder
states, norm3/ff GEGLU feed-forward ff.net.0.proj -> ff.net.2), proj_out (1x1 conv). Attention
projections to_q/to_k/to_v have no bias; to_out.0 has one. ``attention_head_dim`` = 8 is, as in
diffusers' SD 1.5 config, the number of heads (head width = channels / 8).

The encoder states may have any length L: Diff-ID's conditioning is 77 text tokens plus identity
tokens (docs/adapter.md).

Widths scale with ``UNetConfig.sd15(scale)``; the rule is in ``scaling``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from .scaling import clip_text_width, group_width

#: Where parameters are created; "meta" counts and names them without allocating. (typing.Union
#: rather than ``|``: this alias is evaluated at import, and Pythons before 3.10 lack ``type | type``.)
Device = Union[torch.device, str, None]


@dataclass(frozen=True)
class UNetConfig:
    """diffusers' config fields for SD 1.5 (the ones this architecture reads)."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    #: Which down blocks have cross-attention (CrossAttnDownBlock2D); the up blocks mirror them.
    cross_attention_blocks: tuple[bool, ...] = (True, True, True, False)
    layers_per_block: int = 2
    #: Heads per attention layer (diffusers' misnomer for SD 1.5: not the head width).
    attention_head_dim: int = 8
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1
    #: The widths that decide which ResnetBlock2Ds have a conv_shortcut (diffusers: those whose
    #: input and output widths differ); None: block_out_channels. A scaled config keeps the
    #: full-size widths here, so that rounding two widths to the same multiple of 32 does not drop
    #: a conv_shortcut: every scale has the full model's state_dict keys and graph structure.
    shortcut_channels: tuple[int, ...] | None = None

    @classmethod
    def sd15(cls, scale: float = 1.0) -> "UNetConfig":
        """SD 1.5 at ``scale`` (scaling.py: channels to multiples of 32, cross dim = CLIP text width)."""
        full = cls()
        if scale == 1:
            return full
        return cls(
            block_out_channels=tuple(group_width(c, scale) for c in full.block_out_channels),
            cross_attention_dim=clip_text_width(scale),
            shortcut_channels=full.block_out_channels,
        )

    def to_json(self) -> dict:
        return asdict(self)


def timestep_embedding(timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float, max_period: float = 10000.0) -> torch.Tensor:
    """diffusers' ``get_timestep_embedding``: [B] -> [B, dim] sinusoids, computed in float32."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    args = timesteps[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class Timesteps(nn.Module):
    """diffusers' ``Timesteps``: no weights, so nothing in the state dict."""

    def __init__(self, num_channels: int, flip_sin_to_cos: bool, downscale_freq_shift: float):
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(timesteps, self.num_channels, self.flip_sin_to_cos, self.downscale_freq_shift)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, time_embed_dim: int, device: Device = None):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim, device=device)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """diffusers' ResnetBlock2D, time_embedding_norm "default", output_scale_factor 1.

    ``temb_channels`` None (the VAE) leaves out time_emb_proj, as diffusers does. ``use_in_shortcut``
    is diffusers' argument too: None gives a 1x1 conv_shortcut exactly when the widths differ.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int | None, groups: int, eps: float, use_in_shortcut: bool | None = None, device: Device = None):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, device=device)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, device=device)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels, device=device) if temb_channels is not None else None
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, device=device)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, device=device)
        self.nonlinearity = nn.SiLU()
        use_in_shortcut = in_channels != out_channels if use_in_shortcut is None else use_in_shortcut
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1, device=device) if use_in_shortcut else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Downsample2D(nn.Module):
    """A stride-2 3x3 conv. ``padding`` 0 (the VAE) pads right and bottom by one first, as diffusers does."""

    def __init__(self, channels: int, padding: int, device: Device = None):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0)
        return self.conv(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour x2 (or to ``size`` when the U-Net input is not a multiple of 8), then a 3x3 conv."""

    def __init__(self, channels: int, device: Device = None):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, device=device)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Softmax attention over [B, N, heads·d] / [B, M, heads·d] -> [B, N, heads·d].

    The softmax runs in float32 whatever the input dtype (diffusers upcasts it for the VAE; for
    float32 inputs, the only ones the reference runs, it changes nothing).
    """
    b, n, inner = q.shape
    d = inner // heads
    q = q.reshape(b, n, heads, d).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, d).transpose(1, 2)
    v = v.reshape(b, v.shape[1], heads, d).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (d ** -0.5)
    probs = scores.float().softmax(dim=-1).to(v.dtype)
    return torch.matmul(probs, v).transpose(1, 2).reshape(b, n, inner)


class Attention(nn.Module):
    """diffusers' ``Attention`` (AttnProcessor semantics): to_q, to_k, to_v, to_out.0 (+ dropout)."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, cross_attention_dim: int | None = None, bias: bool = False, device: Device = None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=bias, device=device)
        self.to_k = nn.Linear(cross_attention_dim or query_dim, inner, bias=bias, device=device)
        self.to_v = nn.Linear(cross_attention_dim or query_dim, inner, bias=bias, device=device)
        # A ModuleList so that the keys are to_out.0.weight / to_out.0.bias, as in diffusers.
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=True, device=device), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        out = attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out[1](self.to_out[0](out))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, device: Device = None):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)  # exact (erf) GELU, as diffusers' GEGLU


class FeedForward(nn.Module):
    """net.0 = GEGLU(dim -> 4·dim), net.1 = dropout, net.2 = Linear(4·dim -> dim)."""

    def __init__(self, dim: int, mult: int = 4, device: Device = None):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner, device=device), nn.Dropout(0.0), nn.Linear(inner, dim, device=device)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, cross_attention_dim: int, device: Device = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5, device=device)
        self.attn1 = Attention(dim, heads, dim_head, None, device=device)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5, device=device)
        self.attn2 = Attention(dim, heads, dim_head, cross_attention_dim, device=device)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, device=device)
        self.ff = FeedForward(dim, device=device)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    """GroupNorm (eps 1e-6), 1x1 proj_in, one BasicTransformerBlock over the h·w tokens, 1x1 proj_out, residual."""

    def __init__(self, heads: int, channels: int, cross_attention_dim: int, groups: int, device: Device = None):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, device=device)
        self.proj_in = nn.Conv2d(channels, channels, 1, device=device)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, heads, channels // heads, cross_attention_dim, device=device)])
        self.proj_out = nn.Conv2d(channels, channels, 1, device=device)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        residual = x
        x = self.proj_in(self.norm(x))
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        for block in self.transformer_blocks:
            x = block(x, context)
        x = x.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        return self.proj_out(x) + residual


class DownBlock(nn.Module):
    """CrossAttnDownBlock2D (``cross`` true) or DownBlock2D; returns the output and its skip states."""

    def __init__(self, cfg: UNetConfig, channels: tuple[int, int], shortcut_channels: tuple[int, int], temb: int, cross: bool, add_downsample: bool, device: Device = None):
        """``channels``: (in, out); ``shortcut_channels``: the same at full size (UNetConfig.shortcut_channels)."""
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        n, out_channels = cfg.layers_per_block, channels[1]
        io = zip(self.resnet_io(*channels, n), self.resnet_io(*shortcut_channels, n))
        self.resnets = nn.ModuleList([ResnetBlock2D(i, o, temb, g, eps, use_in_shortcut=ri != ro, device=device) for (i, o), (ri, ro) in io])
        self.attentions = nn.ModuleList([Transformer2DModel(cfg.attention_head_dim, out_channels, cfg.cross_attention_dim, g, device=device) for _ in range(n)]) if cross else None
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels, cfg.downsample_padding, device=device)]) if add_downsample else None

    @staticmethod
    def resnet_io(in_channels: int, out_channels: int, n: int) -> list[tuple[int, int]]:
        return [(in_channels if i == 0 else out_channels, out_channels) for i in range(n)]

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """UNetMidBlock2DCrossAttn: resnets.0, attentions.0, resnets.1."""

    def __init__(self, cfg: UNetConfig, channels: int, temb: int, device: Device = None):
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.attentions = nn.ModuleList([Transformer2DModel(cfg.attention_head_dim, channels, cfg.cross_attention_dim, g, device=device)])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, temb, g, eps, device=device) for _ in range(2)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        return self.resnets[1](x, temb)


class UpBlock(nn.Module):
    """CrossAttnUpBlock2D (``cross`` true) or UpBlock2D: layers_per_block + 1 resnets, each eating one skip state.

    Resnet j takes [previous output ‖ skip] channels: prev_output_channel (j = 0) or out_channels,
    plus the skip's channels — out_channels, except the last resnet's, which is in_channels (the
    width of the down block one level further out), exactly as diffusers sizes them.
    """

    def __init__(self, cfg: UNetConfig, channels: tuple[int, int, int], shortcut_channels: tuple[int, int, int], temb: int, cross: bool, add_upsample: bool, device: Device = None):
        """``channels``: (in, prev_output, out); ``shortcut_channels``: the same at full size."""
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        n = cfg.layers_per_block + 1
        out_channels = channels[2]
        io = zip(self.resnet_io(*channels, n), self.resnet_io(*shortcut_channels, n))
        self.resnets = nn.ModuleList([ResnetBlock2D(i, o, temb, g, eps, use_in_shortcut=ri != ro, device=device) for (i, o), (ri, ro) in io])
        self.attentions = nn.ModuleList([Transformer2DModel(cfg.attention_head_dim, out_channels, cfg.cross_attention_dim, g, device=device) for _ in range(n)]) if cross else None
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, device=device)]) if add_upsample else None

    @staticmethod
    def resnet_io(in_channels: int, prev_output_channels: int, out_channels: int, n: int) -> list[tuple[int, int]]:
        io = []
        for j in range(n):
            skip = in_channels if j == n - 1 else out_channels
            res_in = prev_output_channels if j == 0 else out_channels
            io.append((res_in + skip, out_channels))
        return io

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor, context: torch.Tensor, upsample_size: tuple[int, int] | None) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class UNet2DConditionModel(nn.Module):
    """(sample [B, 4, h, w], timestep [B] or scalar, encoder_hidden_states [B, L, cross_dim]) -> noise [B, 4, h, w]."""

    def __init__(self, config: UNetConfig | None = None, device: Device = None):
        super().__init__()
        cfg = self.config = config or UNetConfig()
        ch = list(cfg.block_out_channels)
        temb = 4 * ch[0]
        g = cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1, device=device)
        self.time_proj = Timesteps(ch[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        self.time_embedding = TimestepEmbedding(ch[0], temb, device=device)

        ref = list(cfg.shortcut_channels or ch)
        if len(ref) != len(ch):
            raise ValueError(f"shortcut_channels {ref} and block_out_channels {ch} differ in length")
        last = len(ch) - 1
        self.down_blocks = nn.ModuleList([
            DownBlock(cfg, io, ref_io, temb, cross, add_downsample=i < last, device=device)
            for i, (cross, io, ref_io) in enumerate(zip(cfg.cross_attention_blocks, self.down_channels(ch), self.down_channels(ref)))
        ])
        self.mid_block = MidBlock(cfg, ch[-1], temb, device=device)
        self.up_blocks = nn.ModuleList([
            UpBlock(cfg, io, ref_io, temb, cross, add_upsample=i < last, device=device)
            for i, (cross, io, ref_io) in enumerate(zip(cfg.cross_attention_blocks[::-1], self.up_channels(ch), self.up_channels(ref)))
        ])

        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=cfg.norm_eps, device=device)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1, device=device)

    @staticmethod
    def down_channels(ch: list[int]) -> list[tuple[int, int]]:
        """(in, out) of each down block, as diffusers' UNet2DConditionModel wires them."""
        return [(ch[max(i - 1, 0)], c) for i, c in enumerate(ch)]

    @staticmethod
    def up_channels(ch: list[int]) -> list[tuple[int, int, int]]:
        """(in, prev_output, out) of each up block: in is the width one level further out (the last skip's)."""
        rev = ch[::-1]
        return [(rev[min(i + 1, len(rev) - 1)], rev[max(i - 1, 0)], c) for i, c in enumerate(rev)]

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], dtype=torch.float32, device=sample.device)
        # [B], [1] or a scalar: broadcast to the batch, as diffusers does.
        t = timestep.reshape(-1).to(sample.device).expand(sample.shape[0])
        emb = self.time_embedding(self.time_proj(t).to(sample.dtype))

        # diffusers passes explicit sizes to the upsamplers when h or w is not a multiple of 2^(blocks-1).
        factor = 2 ** (len(self.up_blocks) - 1)
        forward_size = any(s % factor != 0 for s in sample.shape[-2:])

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, states = block(x, emb, encoder_hidden_states)
            skips.extend(states)
        x = self.mid_block(x, emb, encoder_hidden_states)
        for i, block in enumerate(self.up_blocks):
            mine = skips[-len(block.resnets):]
            del skips[-len(block.resnets):]
            size = tuple(skips[-1].shape[-2:]) if forward_size and i < len(self.up_blocks) - 1 else None
            x = block(x, mine, emb, encoder_hidden_states, size)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))
