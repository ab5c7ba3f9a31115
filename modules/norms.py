"""Normalisation layers: RMSNorm, LayerNorm, CosineNorm, and `make_norm(kind, dim)` to pick one.

RMSNorm (Zhang & Sennrich 2019) rescales by the root mean square; LayerNorm (Ba et al. 2016) also
removes the mean; CosineNorm (Luo et al. 2017) projects onto the unit sphere and multiplies by one
learned gain, initialised to sqrt(dim) so activations start at the same size as RMSNorm's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .tracing import LoggingModule, log_io


class RMSNorm(LoggingModule):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    @log_io
    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class LayerNorm(LoggingModule):
    def __init__(self, dim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    @log_io
    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class CosineNorm(LoggingModule):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.tensor(math.sqrt(dim)))

    @log_io
    def forward(self, x):
        return x / x.norm(dim=-1, keepdim=True).clamp_min(self.eps) * self.gain


def make_norm(kind: str, dim: int, bias: bool = False) -> LoggingModule:
    """'rms' | 'layer' | 'cosine' -> the norm module of width `dim`."""
    if kind == "rms":
        return RMSNorm(dim)
    if kind == "layer":
        return LayerNorm(dim, bias=bias)
    if kind == "cosine":
        return CosineNorm(dim)
    raise ValueError(f"norm = {kind!r} is not valid; choose one of ['rms', 'layer', 'cosine']")
