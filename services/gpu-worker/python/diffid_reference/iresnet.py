"""InsightFace's IResNet (arcface_torch ``backbones/iresnet.py``) with InsightFace's parameter names.

A ``backbone.pth`` from arcface_torch (iresnet50 ``r50``, iresnet100 ``r100``, e.g. glint360k /
ms1mv3 / webface600k checkpoints) loads with ``load_state_dict(strict=True)``.

Structure (widths at full size):

==========================  ==================================================================
conv1, bn1, prelu           3x3 conv 3 -> 64 (stride 1, no bias), BatchNorm2d, PReLU(64)
layer1 .. layer4            IBasicBlock stacks of 64, 128, 256, 512 channels, each starting with
                            stride 2: [3, 4, 14, 3] blocks (r50), [3, 13, 30, 3] (r100)
  block                     bn1, conv1 (3x3), bn2, prelu, conv2 (3x3, the block's stride), bn3;
                            downsample.0 (1x1 conv, stride) + downsample.1 (BatchNorm2d) on the
                            first block of every layer (its stride is 2)
bn2, dropout                BatchNorm2d(512) on the 7x7 map, flatten, Dropout (p 0 at inference)
fc, features                Linear(512·7·7 -> 512), BatchNorm1d(512)
==========================  ==================================================================

All BatchNorms have eps 1e-5; convs have no bias. Input: [B, 3, 112, 112] aligned RGB in
``(p - 127.5) / 127.5`` (inference-facts.md); output: the unnormalised 512-d embedding. The
module is meant for ``eval()`` (running statistics), as the recognizer runs in the service.
``scale`` scales the stage widths and the embedding size (scaling.plain_width); the 7x7 final map
and so fc's 49x fan-in are fixed by the 112-px input.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .scaling import plain_width
from .sd_unet import Device

#: Blocks per stage (arcface_torch's ``iresnet50`` / ``iresnet100``).
LAYERS = {"r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3)}
#: The 112-px input halves four times: 7x7 before fc.
FC_SCALE = 7 * 7


@dataclass(frozen=True)
class IResNetConfig:
    layers: tuple[int, int, int, int] = LAYERS["r100"]
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    num_features: int = 512
    dropout: float = 0.0

    @classmethod
    def of(cls, name: str = "r100", scale: float = 1.0) -> "IResNetConfig":
        if name not in LAYERS:
            raise ValueError(f"IResNet {name!r}: expected one of {sorted(LAYERS)}")
        return cls(layers=LAYERS[name], widths=tuple(plain_width(w, scale) for w in cls.widths), num_features=plain_width(512, scale))

    def to_json(self) -> dict:
        return asdict(self)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, device: Device = None) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False, device=device)


class IBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, device: Device = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5, device=device)
        self.conv1 = conv3x3(inplanes, planes, device=device)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5, device=device)
        self.prelu = nn.PReLU(planes, device=device)
        self.conv2 = conv3x3(planes, planes, stride, device=device)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5, device=device)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(nn.Module):
    """aligned face [B, 3, 112, 112] -> embedding [B, num_features] (not normalised)."""

    def __init__(self, config: IResNetConfig | None = None, device: Device = None):
        super().__init__()
        cfg = self.config = config or IResNetConfig()
        w = cfg.widths
        self.inplanes = w[0]
        self.conv1 = nn.Conv2d(3, w[0], 3, stride=1, padding=1, bias=False, device=device)
        self.bn1 = nn.BatchNorm2d(w[0], eps=1e-5, device=device)
        self.prelu = nn.PReLU(w[0], device=device)
        self.layer1 = self._make_layer(w[0], cfg.layers[0], device)
        self.layer2 = self._make_layer(w[1], cfg.layers[1], device)
        self.layer3 = self._make_layer(w[2], cfg.layers[2], device)
        self.layer4 = self._make_layer(w[3], cfg.layers[3], device)
        self.bn2 = nn.BatchNorm2d(w[3], eps=1e-5, device=device)
        self.dropout = nn.Dropout(p=cfg.dropout)
        self.fc = nn.Linear(w[3] * FC_SCALE, cfg.num_features, device=device)
        self.features = nn.BatchNorm1d(cfg.num_features, eps=1e-5, device=device)

    def _make_layer(self, planes: int, blocks: int, device: Device, stride: int = 2) -> nn.Sequential:
        # Every stage starts with stride 2, so every stage's first block has a downsample branch.
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False, device=device),
            nn.BatchNorm2d(planes, eps=1e-5, device=device),
        )
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample, device=device)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes, device=device) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def iresnet50(scale: float = 1.0, device: Device = None) -> IResNet:
    return IResNet(IResNetConfig.of("r50", scale), device=device)


def iresnet100(scale: float = 1.0, device: Device = None) -> IResNet:
    return IResNet(IResNetConfig.of("r100", scale), device=device)
