"""Position-wise feed-forward network: GELU (GPT-2) or SwiGLU (Shazeer 2020, gated SiLU).

GELU: `W2 gelu(W1 x)` with hidden width 4C. SwiGLU: `W2 (silu(W1 x) * W3 x)` with hidden width 2/3 of
4C, so both have about the same number of parameters (8C^2).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .tracing import LoggingModule, log_io


class MLP(LoggingModule):
    def __init__(self, d_model: int, kind: str = "gelu", bias: bool = False, dropout: float = 0.0,
                 hidden: int | None = None):
        super().__init__()
        if kind not in ("gelu", "swiglu", "relu"):
            raise ValueError(f"mlp = {kind!r} is not valid; choose gelu or swiglu (relu for the HMU baseline)")
        self.kind = kind
        hidden = hidden or (4 * d_model if kind != "swiglu" else int(2 * 4 * d_model / 3))
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.gate = nn.Linear(d_model, hidden, bias=bias) if kind == "swiglu" else None
        self.down = nn.Linear(hidden, d_model, bias=bias)
        self.down.residual = True  # scaled at init (modules.base.init_weights)
        self.drop = nn.Dropout(dropout)

    @log_io
    def forward(self, x):
        if self.kind == "swiglu":
            h = F.silu(self.gate(x)) * self.up(x)
        else:
            h = F.gelu(self.up(x)) if self.kind == "gelu" else F.relu(self.up(x))
        return self.drop(self.down(h))  # (B, T, C)
