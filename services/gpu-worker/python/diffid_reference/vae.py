"""Stable Diffusion 1.5's VAE (diffusers' ``AutoencoderKL``) in plain torch, with diffusers' names.

A diffusers ``vae/diffusion_pytorch_model.safetensors`` loads with ``load_state_dict(strict=True)``
as long as it uses the current attention names (to_q / to_k / to_v / to_out.0; diffusers itself
renames the pre-0.14 query / key / value / proj_attn on load — so does
``safetensors_io.load_diffusers_state_dict``).

Structure (C = block_out_channels = [128, 256, 512, 512] at full size; every GroupNorm has 32
groups and eps 1e-6; no time embedding anywhere):

=====================================  ======================================================
encoder.conv_in                        Conv2d(3, C0, 3, padding 1)
encoder.down_blocks.{i}.resnets.{0,1}  ResnetBlock2D (norm1, conv1, norm2, conv2, conv_shortcut)
encoder.down_blocks.{i}.downsamplers   i < 3: pad (0, 1, 0, 1) with zeros, then a stride-2 3x3
  .0.conv                              conv without padding (diffusers' Downsample2D padding=0)
encoder.mid_block                      resnets.0, attentions.0, resnets.1
encoder.mid_block.attentions.0         group_norm, to_q, to_k, to_v, to_out.0 (all with bias):
                                       one head over all C3 channels, residual
encoder.conv_norm_out, conv_out        GroupNorm, SiLU, Conv2d(C3, 8, 3): mean ‖ logvar
quant_conv, post_quant_conv            1x1 convs, 8 -> 8 and 4 -> 4
decoder.conv_in                        Conv2d(4, C3, 3, padding 1)
decoder.mid_block                      as the encoder's
decoder.up_blocks.{i}.resnets.{0,1,2}  channels reversed(C); upsamplers.0.conv (nearest x2,
                                       3x3) on all but the last block
decoder.conv_norm_out, conv_out        GroupNorm, SiLU, Conv2d(C0, 3, 3)
=====================================  ======================================================

Ports (docs/bundle-contract.md, ``vae_encoder``'s ``output_kind``): ``encode_mean`` gives the
posterior mean, the deterministic form of the ``latent`` output; ``encode_moments`` gives the
``mean_logvar`` output (optimum's ``latent_parameters``: the raw quant_conv output, mean in the
first 4 channels). Neither applies the 0.18215 scaling factor: the service does (manifest
``latent.scaling_factor``). ``decode`` takes an unscaled latent and returns pixels in about [-1, 1].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .scaling import group_width
from .sd_unet import Device, Downsample2D, ResnetBlock2D, Upsample2D, attention

#: The SD 1.5 VAE's latent scaling factor (applied by the service, not here).
SCALING_FACTOR = 0.18215


@dataclass(frozen=True)
class VaeConfig:
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    #: As UNetConfig.shortcut_channels: the full-size widths, which decide where a ResnetBlock2D
    #: has a conv_shortcut (at 1/8, 128 and 256 both round to 32 channels; the shortcut stays).
    shortcut_channels: tuple[int, ...] | None = None

    @classmethod
    def sd15(cls, scale: float = 1.0) -> "VaeConfig":
        """SD 1.5's VAE at ``scale`` (scaling.py: channels to multiples of 32)."""
        full = cls()
        if scale == 1:
            return full
        return cls(block_out_channels=tuple(group_width(c, scale) for c in full.block_out_channels), shortcut_channels=full.block_out_channels)

    def to_json(self) -> dict:
        return asdict(self)


class VaeAttention(nn.Module):
    """diffusers' ``Attention`` as the VAE mid block builds it: GroupNorm, one head, biased projections, residual."""

    def __init__(self, channels: int, groups: int, eps: float, device: Device = None):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps, device=device)
        self.to_q = nn.Linear(channels, channels, device=device)
        self.to_k = nn.Linear(channels, channels, device=device)
        self.to_v = nn.Linear(channels, channels, device=device)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels, device=device), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        out = attention(self.to_q(t), self.to_k(t), self.to_v(t), heads=1)
        out = self.to_out[1](self.to_out[0](out))
        return out.transpose(1, 2).reshape(b, c, h, w) + x


class VaeMidBlock(nn.Module):
    """UNetMidBlock2D without a time embedding: resnets.0, attentions.0, resnets.1."""

    def __init__(self, channels: int, groups: int, eps: float, device: Device = None):
        super().__init__()
        self.attentions = nn.ModuleList([VaeAttention(channels, groups, eps, device=device)])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, None, groups, eps, device=device) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class DownEncoderBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, add_downsample: bool, groups: int, eps: float, shortcut: bool, device: Device = None):
        """``shortcut``: whether the first resnet has a conv_shortcut (its widths differ at full size)."""
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if j == 0 else out_channels, out_channels, None, groups, eps, use_in_shortcut=shortcut and j == 0, device=device)
            for j in range(layers)
        ])
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels, padding=0, device=device)]) if add_downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpDecoderBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, add_upsample: bool, groups: int, eps: float, shortcut: bool, device: Device = None):
        """``shortcut``: whether the first resnet has a conv_shortcut (its widths differ at full size)."""
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if j == 0 else out_channels, out_channels, None, groups, eps, use_in_shortcut=shortcut and j == 0, device=device)
            for j in range(layers)
        ])
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, device=device)]) if add_upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: VaeConfig, device: Device = None):
        super().__init__()
        ch, g, eps = cfg.block_out_channels, cfg.norm_num_groups, cfg.norm_eps
        ref = cfg.shortcut_channels or ch
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1, device=device)
        blocks = []
        for i, c in enumerate(ch):
            inp, changes = ch[max(i - 1, 0)], ref[max(i - 1, 0)] != ref[i]
            blocks.append(DownEncoderBlock2D(inp, c, cfg.layers_per_block, i < len(ch) - 1, g, eps, changes, device=device))
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = VaeMidBlock(ch[-1], g, eps, device=device)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=eps, device=device)
        self.conv_act = nn.SiLU()
        # double_z: mean and logvar.
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg.latent_channels, 3, padding=1, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: VaeConfig, device: Device = None):
        super().__init__()
        ch, g, eps = cfg.block_out_channels, cfg.norm_num_groups, cfg.norm_eps
        rev, ref = ch[::-1], (cfg.shortcut_channels or ch)[::-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, rev[0], 3, padding=1, device=device)
        self.mid_block = VaeMidBlock(rev[0], g, eps, device=device)
        blocks = []
        for i, c in enumerate(rev):
            prev, changes = rev[max(i - 1, 0)], ref[max(i - 1, 0)] != ref[i]
            blocks.append(UpDecoderBlock2D(prev, c, cfg.layers_per_block + 1, i < len(ch) - 1, g, eps, changes, device=device))
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps, device=device)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels, 3, padding=1, device=device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(self, config: VaeConfig | None = None, device: Device = None):
        super().__init__()
        cfg = self.config = config or VaeConfig()
        self.encoder = Encoder(cfg, device=device)
        self.decoder = Decoder(cfg, device=device)
        self.quant_conv = nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1, device=device)
        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1, device=device)

    def encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] [B, 3, H, W] -> mean ‖ logvar [B, 8, H/8, W/8] (``mean_logvar``; logvar unclamped)."""
        return self.quant_conv(self.encoder(x))

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] [B, 3, H, W] -> the posterior mean [B, 4, H/8, W/8], unscaled (``latent``)."""
        return self.encode_moments(x)[:, : self.config.latent_channels]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """An unscaled latent [B, 4, h, w] -> pixels [B, 3, 8h, 8w] (about [-1, 1]; not clamped)."""
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mean (no sampling, so deterministic)."""
        return self.decode(self.encode_mean(x))
