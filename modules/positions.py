"""Positional information: learned and sinusoidal (added to the token embedding), rotary (RoPE, applied to
queries and keys) and a learned relative bias (added to the attention scores).

`Positions` is the one object a model holds: `embed(x, pos)` adds an absolute embedding when the scheme
has one, and `attention_extras(q_pos, k_pos)` gives what attention needs for the relative schemes. The
positions are explicit, so segment-recurrent models can offset them and cached generation continues where
the cache ends. They are (T,) integer tensors, or, when consecutive (as a model's always are), a Python
`range`: then a scheme that needs no tensor of them makes none — the learned table checks its bounds on two
integers and reads a slice, and the absolute schemes never build the key positions that only attention uses.
`positions_after(past, n)` gives the ranges of a call that continues where `past` cached positions end.
Cached decoding runs one token per call, so what a call costs apart from arithmetic is what bounds it.

References: Vaswani et al. 2017 (sinusoidal); Su et al. 2021, RoFormer (RoPE, the "rotate half" form
of GPT-NeoX); Shaw et al. 2018 / Raffel et al. 2020 (learned relative bias, here one scalar per head
and clipped distance, shared by all layers as in T5).
"""
from __future__ import annotations


import torch
from torch import nn

from .base import no_decay
from .tracing import LoggingModule, log_io


def as_tensor(pos, device=None) -> torch.Tensor:
    """Positions as a (T,) int64 tensor: `pos` is one already, or a `range` of consecutive positions."""
    return torch.arange(pos.start, pos.stop, device=device) if isinstance(pos, range) else pos


def positions_after(past: int, n: int) -> tuple[range, range]:
    """The positions of n new queries that follow `past` earlier ones (held in a cache), and of every key they
    see, the earlier ones first: past..past+n-1 and 0..past+n-1, as ranges. With nothing earlier they are one
    object, so `Positions.attention_extras` makes one tensor of them."""
    q_pos = range(past, past + n)
    return q_pos, (range(past + n) if past else q_pos)


class LearnedPositions(LoggingModule):
    """A table of `max_len` learned vectors; position p reads row p."""

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.max_len = max_len
        self.table = nn.Embedding(max_len, dim)
        no_decay(self.table.weight)

    @log_io
    def forward(self, pos):
        """pos: a (T,) tensor, or a `range` of consecutive positions: then the bounds are checked on two
        integers and the rows are a slice of the table (a tensor check costs four operations and makes the
        host wait for the result; it also splits a `torch.compile` graph)."""
        consecutive = isinstance(pos, range)
        first, last = (pos.start, pos.stop - 1) if consecutive else (int(pos.min()), int(pos.max()))
        if first < 0 or last >= self.max_len:
            raise ValueError(f"learned positions cover 0..{self.max_len - 1}, got {first}..{last}; "
                             f"use a longer block_size or pos='rope'/'relative'")
        return self.table.weight[pos.start:pos.stop] if consecutive else self.table(pos)  # (T, C)


class SinusoidalPositions(LoggingModule):
    """sin/cos of the position at geometrically spaced frequencies; no parameters, any position."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", base ** (-torch.arange(0, dim, 2).float() / dim), persistent=False)

    @log_io
    def forward(self, pos):
        angles = as_tensor(pos, self.inv_freq.device).float()[:, None] * self.inv_freq  # (T, C/2)
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (T, C), interleaved


class Rotary:
    """Cos/sin of the RoPE angles for one set of query and key positions; rotates q and k."""

    def __init__(self, q_cos, q_sin, k_cos, k_sin):
        self.q_cos, self.q_sin, self.k_cos, self.k_sin = q_cos, q_sin, k_cos, k_sin

    def rotate(self, q, k):
        """q (B, H, T, d), k (B, H_kv, S, d). With a KV cache only the newest keys are projected in a
        call, so k takes the last S key positions (the cached keys were rotated when they were new)."""
        S = k.shape[2]
        return rotate(q, self.q_cos, self.q_sin), rotate(k, self.k_cos[-S:], self.k_sin[-S:])


def rotate(x, cos, sin):
    """Rotate each pair (x_i, x_{i+d/2}) of x (B, H, T, d) by the angle of its position and frequency."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class RoPE(LoggingModule):
    """Rotary embedding (no parameters): `forward(q_pos, k_pos)` -> a `Rotary` for attention."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", base ** (-torch.arange(0, head_dim, 2).float() / head_dim),
                             persistent=False)

    def angles(self, pos):
        a = pos.float()[:, None] * self.inv_freq  # (T, d/2)
        return a.cos(), a.sin()

    @log_io
    def forward(self, q_pos, k_pos):
        q_cos, q_sin = self.angles(q_pos)
        k_cos, k_sin = (q_cos, q_sin) if k_pos is q_pos else self.angles(k_pos)
        return Rotary(q_cos, q_sin, k_cos, k_sin)


class RelativeBias(LoggingModule):
    """A learned scalar per head and per clipped distance q - k in [-max_distance, max_distance]."""

    def __init__(self, n_head: int, max_distance: int):
        super().__init__()
        self.max_distance = max_distance
        self.table = no_decay(nn.Parameter(torch.zeros(n_head, 2 * max_distance + 1)))

    @log_io
    def forward(self, q_pos, k_pos):
        dist = (q_pos[:, None] - k_pos[None, :]).clamp(-self.max_distance, self.max_distance)
        return self.table[:, dist + self.max_distance]  # (H, Tq, Tk)


class Positions(LoggingModule):
    """The model's positional scheme: 'learned' | 'sinusoidal' | 'rope' | 'relative'."""

    def __init__(self, kind: str, d_model: int, n_head: int, max_len: int):
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.absolute = LearnedPositions(max_len, d_model)
        elif kind == "sinusoidal":
            self.absolute = SinusoidalPositions(d_model)
        elif kind == "rope":
            self.rope = RoPE(d_model // n_head)
        elif kind == "relative":
            self.relative = RelativeBias(n_head, max_len)
        else:
            raise ValueError(f"pos = {kind!r} is not valid; choose learned, sinusoidal, rope or relative")

    def embed(self, x, pos):
        """x (B, T, C) plus the absolute embedding of `pos` ((T,) tensor or range), if the scheme has one.
        Before the fixed sinusoidal table (amplitude 1) the token embedding is scaled by sqrt(C), as in
        Vaswani et al., so that at initialisation (std 0.02) the tokens are not drowned by their positions."""
        if self.kind == "sinusoidal":
            return x * x.shape[-1] ** 0.5 + self.absolute(pos)
        return x + self.absolute(pos) if self.kind == "learned" else x

    def attention_extras(self, q_pos, k_pos) -> dict:
        """Keyword arguments for `Attention`: `rotary=` (RoPE) or `bias=` (relative), else nothing. The
        positions (tensors or ranges) become tensors only here, for the two schemes that use them."""
        if self.kind == "rope":
            device = self.rope.inv_freq.device
        elif self.kind == "relative":
            device = self.relative.table.device
        else:
            return {}
        q = as_tensor(q_pos, device)
        k = q if k_pos is q_pos else as_tensor(k_pos, device)
        return {"rotary": self.rope(q, k)} if self.kind == "rope" else {"bias": self.relative(q, k)}


def sinusoidal_table(n: int, dim: int) -> torch.Tensor:
    """The (n, dim) sinusoidal table, for plotting in notebooks."""
    return SinusoidalPositions(dim)(torch.arange(n))


__all__ = ["as_tensor", "positions_after", "LearnedPositions", "SinusoidalPositions", "RoPE", "Rotary", "RelativeBias",
           "Positions", "sinusoidal_table"]
