"""Deterministic random weights for the full-architecture modules, from one integer seed.

No trained Diff-ID weights are public, and CI cannot download SD 1.5; the parity checks (torch vs
the exported ONNX graphs, ≤ 1e-3) need weights that are reproducible and that make every layer
matter. ``seeded_init(module, seed)`` overwrites every parameter and BatchNorm statistic:

* Each tensor gets its own generator, seeded from sha256(f"{seed}/{name}"): its values depend on
  the seed, its state_dict name and its shape only — not on construction order or on the other
  tensors — so the same seed gives the same weights on every machine and torch build that shares
  torch's CPU normal generator (drawn in float32 on the CPU, then cast and copied).
* Linear and Conv2d weights: N(0, g^2 / fan_in), fan_in = inputs x kernel area, so each layer
  keeps unit variance (scale-independent: a 1/8-width model behaves like the full one). g = 1,
  except the last layer of each residual branch (``RESIDUAL_OUTPUT``: ResnetBlock2D conv2, the
  Transformer2DModel proj_out, the VAE attention's to_out.0, CLIP's out_proj and fc2, IBasicBlock
  conv2), where g = 1/sqrt(n), n the number of such branches in the module initialised: the
  residual stream's variance then grows to about 2x over the whole depth instead of n-fold (or,
  in the IResNet, whose BatchNorms do not renormalise at inference, 1.5^n-fold), while each
  branch still moves the output by ~1/sqrt(n) — far above 1e-3, so a parity check notices any
  branch computed wrongly.
* Biases: N(0, 0.02^2). Norm scales (GroupNorm, LayerNorm, BatchNorm): 1 + N(0, 0.1^2); norm
  shifts N(0, 0.02^2). BatchNorm running_mean N(0, 0.1^2), running_var exp(N(0, 0.1^2)) — not the
  0 / 1 of a fresh module, so an export that drops or misapplies the statistics is caught.
  PReLU slopes 0.25 + N(0, 0.05^2) (torch's 0.25, jittered per channel).
* Embedding tables and CLIP's class_embedding: N(0, 1/2), so token + position embeddings have
  unit variance.
* Nothing is zeroed. diffusers-style zero-initialised outputs (U-Net conv_out, proj_out) would
  make the U-Net's output a constant bias and any parity check vacuous.

The forward-pass tests check the consequence: finite outputs of order one at full depth, and
outputs that move when the conditioning (encoder states, timestep) moves.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import re

import torch
from torch import nn

#: The last layer of each residual branch in sd_unet, vae, clip and iresnet (by state_dict name).
RESIDUAL_OUTPUT = re.compile(
    r"(resnets\.\d+\.conv2\.weight"  # ResnetBlock2D (U-Net, VAE)
    r"|attentions\.\d+\.proj_out\.weight"  # Transformer2DModel (U-Net)
    r"|mid_block\.attentions\.0\.to_out\.0\.weight"  # VAE mid-block attention
    r"|self_attn\.out_proj\.weight|mlp\.fc2\.weight"  # CLIP encoder layers
    r"|layer\d\.\d+\.conv2\.weight)$"  # IBasicBlock (IResNet)
)

BIAS_STD = 0.02
NORM_SCALE_STD = 0.1
NORM_SHIFT_STD = 0.02
RUNNING_STD = 0.1
PRELU_STD = 0.05
EMBEDDING_STD = math.sqrt(0.5)

NORMS = (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._BatchNorm)


def tensor_seed(seed: int, name: str) -> int:
    """The generator seed of one tensor: the first 8 bytes of sha256(f"{seed}/{name}"), as a non-negative int64."""
    digest = hashlib.sha256(f"{seed}/{name}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _normal(seed: int, name: str, shape: torch.Size) -> torch.Tensor:
    g = torch.Generator().manual_seed(tensor_seed(seed, name))
    return torch.randn(shape, generator=g, dtype=torch.float32)


def _values(owner: nn.Module, leaf: str, name: str, shape: torch.Size, seed: int, residual_gain: float) -> torch.Tensor | None:
    z = _normal(seed, name, shape)
    if isinstance(owner, (nn.Linear, nn.Conv2d)):
        if leaf == "bias":
            return BIAS_STD * z
        fan_in = shape[1] * math.prod(shape[2:])
        gain = residual_gain if RESIDUAL_OUTPUT.search(name) else 1.0
        return z * (gain / math.sqrt(fan_in))
    if isinstance(owner, NORMS):
        if leaf == "weight":
            return 1.0 + NORM_SCALE_STD * z
        if leaf == "bias":
            return NORM_SHIFT_STD * z
        if leaf == "running_mean":
            return RUNNING_STD * z
        if leaf == "running_var":
            return torch.exp(RUNNING_STD * z)
        if leaf == "num_batches_tracked":
            return None
    if isinstance(owner, nn.PReLU):
        return 0.25 + PRELU_STD * z
    if isinstance(owner, nn.Embedding) or leaf == "class_embedding":
        return EMBEDDING_STD * z
    raise TypeError(f"seeded_init: no rule for {name} ({type(owner).__name__}.{leaf}); add one in seeded_init.py")


def residual_branches(module: nn.Module) -> int:
    """n of the residual gain 1/sqrt(n): how many residual-branch output layers ``module`` has."""
    return sum(1 for name, _ in module.named_parameters() if RESIDUAL_OUTPUT.search(name))


def seeded_init(module: nn.Module, seed: int) -> nn.Module:
    """Overwrites ``module``'s parameters and BatchNorm statistics in place from ``seed``; returns it.

    Non-persistent buffers (CLIP's position_ids) are left alone. Meta tensors are refused.
    """
    n = residual_branches(module)
    residual_gain = 1.0 / math.sqrt(n) if n else 1.0
    owners = dict(module.named_modules())
    persistent = set(module.state_dict().keys())
    with torch.no_grad():
        for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers()):
            if name not in persistent:
                continue
            if tensor.is_meta:
                raise ValueError(f"seeded_init: {name} is on the meta device; build the module on a real device")
            owner_name, _, leaf = name.rpartition(".")
            values = _values(owners[owner_name], leaf, name, tensor.shape, seed, residual_gain)
            if values is not None:
                tensor.copy_(values.to(tensor.dtype))
    return module
