"""The width-scale rule: one code path makes the full-size models and the small ones CI runs.

Every full-architecture module (``sd_unet``, ``vae``, ``clip``, ``iresnet``) has a config with a
``scale`` constructor (``UNetConfig.sd15(scale)``, ...). ``scale`` changes widths only:

* What stays: every depth (layers per block, transformer layers, residual blocks), the block
  structure and therefore every state_dict key, the number of attention heads, kernel sizes,
  strides, paddings, norm epsilons, activations, and the interfaces fixed by data rather than by
  capacity: image/latent/RGB channels (3, 4, 8), CLIP's vocabulary (49 408) and 77 positions,
  patch size 14, image sizes 224 / 112, the sinusoidal timestep formula.
* U-Net and VAE channels (GroupNorm layers): ``group_width`` — the nearest multiple of 32
  (halves round up), at least 32. GroupNorm keeps its 32 groups, so the exported graphs have the
  full model's normalisation structure. SD 1.5 at 1/8: U-Net [32, 96, 160, 160], VAE
  [32, 32, 64, 64]; at 1/16: U-Net [32, 32, 96, 96] (80/32 = 2.5 rounds up), VAE [32, 32, 32, 32].
  Derived widths follow as diffusers derives them: U-Net heads stay 8, so the head width is
  channels / 8; time embedding 4 × block_out_channels[0]; VAE attention one head over all channels.
* Transformer widths (CLIP towers, and the U-Net's ``cross_attention_dim``, which is the text
  tower's width): ``head_width`` — heads kept, the head width scaled and rounded (halves up, at
  least 1); the model width is heads × head width. ViT-L/14 text at 1/8: 12 heads × 8 = 96;
  vision 16 × 8 = 128; ViT-H/14 vision 16 × 10 = 160.
* Other widths (MLP hidden sizes, projection sizes, IResNet channels and its embedding size):
  ``plain_width`` — scaled and rounded (halves up), at least 1.

Powers of two (1/8, 1/16) are the scales the tests use; any scale in (0, 1] works.
"""
from __future__ import annotations

import math

#: GroupNorm groups of SD 1.5's U-Net and VAE (``norm_num_groups``).
GROUPS = 32


def _round_half_up(x: float) -> int:
    # Not round(): Python's banker's rounding would make 2.5 -> 2 but 3.5 -> 4.
    return int(math.floor(x + 0.5))


def check_scale(scale: float) -> float:
    if not (0 < scale <= 1):
        raise ValueError(f"scale must be in (0, 1]; got {scale}")
    return float(scale)


def plain_width(width: int, scale: float) -> int:
    """width × scale, halves rounded up, at least 1 (unchanged at scale 1)."""
    return max(1, _round_half_up(width * check_scale(scale)))


def group_width(channels: int, scale: float, groups: int = GROUPS) -> int:
    """channels × scale rounded to the nearest multiple of ``groups`` (halves up), at least ``groups``."""
    return max(groups, groups * _round_half_up(channels * check_scale(scale) / groups))


def head_width(head_dim: int, scale: float) -> int:
    """One attention head's width × scale, halves rounded up, at least 1; the head count is kept."""
    return plain_width(head_dim, scale)


def clip_text_width(scale: float) -> int:
    """The CLIP ViT-L/14 text tower's width (12 heads × 64) at ``scale``: the U-Net's cross-attention width."""
    return 12 * head_width(64, scale)
