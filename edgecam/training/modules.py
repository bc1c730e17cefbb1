"""torch modules for the backbone split (imported lazily: this module imports torch)."""

from __future__ import annotations

from typing import Any

import torch


class LiteTrunk(torch.nn.Module):
    """EfficientNet-Lite's stem and its blocks before ``start``."""

    def __init__(self, net: Any, start: int) -> None:
        super().__init__()
        self.stem, self.bn, self.act = net._conv_stem, net._bn0, net._swish
        self.blocks = torch.nn.ModuleList(net._blocks[:start])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)  # drop-connect acts only in training mode, never used here
        return x


class LiteTail(torch.nn.Module):
    """EfficientNet-Lite's blocks from ``start``, head convolution and pooling."""

    def __init__(self, net: Any, start: int) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(net._blocks[start:])
        self.conv, self.bn, self.act = net._conv_head, net._bn1, net._swish
        self.pool = net._avg_pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        x = self.act(self.bn(self.conv(x)))
        return self.pool(x).flatten(1)


class Features(torch.nn.Module):
    """input -> pooled features (and the trunk's output when the tail is fine-tuned)."""

    def __init__(self, trunk: torch.nn.Module, tail: torch.nn.Module, with_trunk: bool) -> None:
        super().__init__()
        self.trunk, self.tail, self.with_trunk = trunk, tail, with_trunk

    def forward(self, x: torch.Tensor) -> Any:
        inner = self.trunk(x)
        pooled = self.tail(inner)
        return (pooled, inner) if self.with_trunk else pooled
