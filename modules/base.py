"""What every architecture shares: the batch and output types, the embedding and head, initialisation,
the loss, and the `LanguageModel` base class with the one call shape

    model(batch, state=None) -> Output(logits, loss, state)

`batch` is a `Batch` (inputs `x` (B, T) and targets `y` (B, T), -100 where no loss is taken), or a bare
(B, T) tensor of ids for inference. `state` is whatever the model carries between calls when streaming
(a KV cache, a memory); `init_state(batch_size)` makes a fresh one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .tracing import LoggingModule, log_io

IGNORE = -100  # target id that takes no loss (prompt positions of a task, padding)


@dataclass
class Batch:
    x: torch.Tensor                 # (B, T) input ids
    y: torch.Tensor | None = None   # (B, T) target ids, IGNORE where no loss


class Output(NamedTuple):
    logits: torch.Tensor            # (B, T, V)
    loss: torch.Tensor | None       # scalar mean cross-entropy over the non-ignored targets
    state: Any = None               # carried state for streaming, None when not streaming


def unpack(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    return batch.x, batch.y


class TokenEmbedding(LoggingModule):
    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.weight = no_decay(nn.Parameter(torch.empty(vocab_size, d_model)))

    @log_io
    def forward(self, ids):
        return F.embedding(ids, self.weight)  # (B, T, C)


class LMHead(LoggingModule):
    """Final projection to vocabulary logits; shares the embedding matrix when tied."""

    def __init__(self, d_model: int, vocab_size: int, tied: TokenEmbedding | None = None):
        super().__init__()
        self.weight = tied.weight if tied is not None else nn.Parameter(torch.empty(vocab_size, d_model))

    @log_io
    def forward(self, h):
        return F.linear(h, self.weight)  # (B, T, V)


class LanguageModel(LoggingModule):
    """Base class of every architecture."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.vocab_size < 1:
            raise ValueError(f"vocab_size = {cfg.vocab_size}: set it from the tokenizer before building")
        self.cfg = cfg

    @property
    def max_context(self) -> int | None:
        """Longest input the model takes in one call (None: unbounded, for segment-recurrent models)."""
        return self.cfg.block_size

    def init_state(self, batch_size: int):
        """A fresh streaming state (None for models that carry nothing)."""
        return None

    def on_step(self, progress: float) -> None:
        """Training callback, called before each optimizer step with progress = step / max_iters.
        Architectures with a curriculum override it; the loop never branches on the architecture."""

    @staticmethod
    def loss(logits, y):
        if y is None:
            return None
        return F.cross_entropy(logits.flatten(0, -2).float(), y.flatten(), ignore_index=IGNORE)

    def num_params(self, embedding: bool = True) -> int:
        """Parameters, counting a tied matrix once; without the token embedding if embedding=False."""
        n = sum(p.numel() for p in self.parameters())
        if not embedding:
            n -= sum(p.numel() for m in self.modules() if isinstance(m, TokenEmbedding) for p in m.parameters())
        return n

    def init_weights(self, n_layer: int) -> None:
        """N(0, 0.02) for matrices and embeddings, zeros for biases; residual output projections
        N(0, 0.02 / sqrt(2 n_layer)) so the residual stream does not grow with depth (GPT-2)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                std = 0.02 / math.sqrt(2 * n_layer) if getattr(m, "residual", False) else 0.02
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Embedding, TokenEmbedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, LMHead) and isinstance(m.weight, nn.Parameter) and m.weight.dim() == 2:
                nn.init.normal_(m.weight, 0.0, 0.02)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: matrices decay; norms, biases and per-head scalars (dim < 2) don't, nor do tables
        of embeddings/biases marked `no_decay` (a rare token's row should not shrink while unused)."""
        decay, no_decay, seen = [], [], set()
        for p in self.parameters():
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            (decay if p.dim() >= 2 and not getattr(p, "no_decay", False) else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def no_decay(p: nn.Parameter) -> nn.Parameter:
    """Mark a parameter table (embedding, position or bias table) as exempt from weight decay."""
    p.no_decay = True
    return p
